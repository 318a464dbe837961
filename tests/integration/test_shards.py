"""``gate run --shard I/N`` and ``gate merge``: the merge of the shards is the single run.

The shards and the single run share one embedding (and response) cache, as runners restoring the
same ``actions/cache`` would: then both sides have the same vectors, and the results must be equal
to the last digit (only ``created_at`` differs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from tests.conftest import valid_results
from tests.integration.test_demo_generative import (OPENAI_SUITE, checklist_for_a_shared_machine,  # noqa: F401
                                                    endpoint, server)

RULES = {"version": 1, "rules": [
    {"name": "target improves", "group": "target", "metric": "*/ndcg@10", "min_delta": 0.0},
    {"name": "no general regression", "group": "general", "max_drop": 0.05, "relative": True, "significant": True},
]}


def gate(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def same_run(single: Path, merged: Path, *, usage: bool = True) -> None:
    a, b = valid_results(single), valid_results(merged)
    a.pop("created_at"), b.pop("created_at")
    if not usage:  # the shards answered from the cache the single run filled
        for info in (*a["tasks"].values(), *b["tasks"].values()):
            info.pop("usage", None)
    assert a == b
    assert (single / "examples.jsonl").read_text() == (merged / "examples.jsonl").read_text()
    assert (single / "report.md").read_text() == (merged / "report.md").read_text()


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.json"
    path.write_text(json.dumps(RULES), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shard_run(small_suite, tmp_path_factory, embedding_cache_dir, rules_file):
    root = tmp_path_factory.mktemp("shards")
    single = gate("run", small_suite, "--out", root / "single", "--cache", embedding_cache_dir, "-q",
                  "--thresholds", rules_file)
    assert single.exit_code == 0, single.output
    for i in (1, 2, 3):
        shard = gate("run", small_suite, "--out", root / f"s{i}", "--cache", embedding_cache_dir, "-q",
                     "--shard", f"{i}/3")
        assert shard.exit_code == 0, shard.output
        assert f"shard {i}/3 of small written" in shard.output
    return root


@pytest.mark.model
def test_merge_of_three_shards_equals_the_single_run(shard_run, rules_file, small_suite):
    root = shard_run
    merged = gate("merge", root / "s3", root / "s1", root / "s2", "--out", root / "merged", "-q",
                  "--thresholds", rules_file, "--suite", small_suite)  # any order on the command line
    assert merged.exit_code == 0, merged.output
    same_run(root / "single", root / "merged")
    shard = json.loads((root / "s2" / "shard.json").read_text())
    assert shard["shard"] == [2, 3] and shard["tasks"]["stsb"]["rows"] == [100, 200]
    assert shard["tasks"]["cranfield"]["rows"] == [13, 26]


@pytest.mark.model
@pytest.mark.parametrize("pick, message", [
    (lambda r: [r / "s1", r / "s2"], "expected the shards 1..3 of 3 exactly once"),
    (lambda r: [r / "s1", r / "s2", r / "s2", r / "s3"], "expected the shards 1..3 of 3 exactly once"),
    (lambda r: [r / "single"], "not a shard folder"),
])
def test_incomplete_or_foreign_shard_sets_are_bad_input(shard_run, pick, message):
    result = gate("merge", *pick(shard_run), "--out", shard_run / "bad", "-q")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.model
def test_shards_of_other_models_or_an_edited_suite_are_bad_input(shard_run, small_suite, embedding_cache_dir,
                                                                 tmp_path):
    other = gate("run", small_suite, "--out", tmp_path / "other2", "--cache", embedding_cache_dir, "-q",
                 "--shard", "2/3", "--candidate", "sentence-transformers:default", "--seed", "7")
    assert other.exit_code == 0, other.output
    result = gate("merge", shard_run / "s1", tmp_path / "other2", shard_run / "s3", "--out", tmp_path / "o", "-q")
    assert result.exit_code == 2 and "only shards of one run can be merged" in result.output
    # the same shards after the suite file changed
    copies = []
    for i in (1, 2, 3):
        shutil.copytree(shard_run / f"s{i}", tmp_path / f"c{i}")
        copies.append(tmp_path / f"c{i}")
    original = small_suite.read_text()
    try:
        small_suite.write_text(original + "\n# edited\n")
        result = gate("merge", *copies, "--out", tmp_path / "o2", "-q", "--suite", small_suite)
        assert result.exit_code == 2 and "the suite file changed since the shards ran" in result.output
    finally:
        small_suite.write_text(original)


@pytest.mark.parametrize("shard", ["3/2", "0/3", "2", "a/b", "1/0"])
def test_bad_shard_is_bad_input(shard, tmp_path):
    result = gate("run", tmp_path / "nothing.yaml", "--shard", shard)
    assert result.exit_code == 2 and "--shard" in result.output


def test_generative_shards_merge_to_the_single_run(endpoint, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    checklist = checklist_for_a_shared_machine(tmp_path)
    base = ["run", OPENAI_SUITE, "--baseline", "openai:base", "--candidate", "openai:tuned", "-q", "--cache", cache]
    single = gate(*base, "--out", tmp_path / "single", "--thresholds", checklist)
    assert single.exit_code == 0, single.output
    for i in (1, 2):
        assert gate(*base, "--out", tmp_path / f"s{i}", "--shard", f"{i}/2").exit_code == 0
    merged = gate("merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "merged", "-q",
                  "--thresholds", checklist)
    assert merged.exit_code == 0, merged.output
    same_run(tmp_path / "single", tmp_path / "merged", usage=False)
    usage = valid_results(tmp_path / "merged")["tasks"]["banking-tools"]["usage"]["candidate"]
    assert usage["cache_hits"] == 18 and usage["requests"] == 0  # summed over the two shards


def test_models_of_two_shards_join_only_when_they_agree():
    from gate.shards import _same_models

    known = {"baseline": {"spec": "st:default", "fingerprint": "sha256:a"},
             "candidate": {"spec": "st:./ft", "fingerprint": "sha256:b"}}
    unloaded = {"baseline": {"spec": "st:default", "fingerprint": None},
                "candidate": {"spec": "st:./ft", "fingerprint": None}}
    assert _same_models(unloaded, known) == known == _same_models(known, unloaded)
    assert _same_models(known, {**known, "candidate": {"spec": "st:./ft", "fingerprint": "sha256:c"}}) is None
    assert _same_models(known, {**known, "candidate": {"spec": "st:./other", "fingerprint": "sha256:b"}}) is None
    assert _same_models(known, {"baseline": known["baseline"]}) is None
