"""The issue-7 task types through ``gate run`` on reduced copies of the bundled examples (real model, real rows).

Reduced copies keep the encoding to a few hundred texts; the full examples are validated (schema and data).
The shard/merge equality for these types is covered here too: ``clustering`` and ``geometry`` run whole in
shard 1, ``classification``, ``pairs`` and ``holdout`` split their examples.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from tests.conftest import ROOT, read_jsonl, valid_results, write_jsonl

pytestmark = pytest.mark.model


def gate(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_full_examples_validate():
    for suite in ("examples/classification/suite.yaml", "examples/probes/suite.yaml"):
        result = gate("validate", ROOT / suite, ROOT / Path(suite).with_name("thresholds.json"))
        assert result.exit_code == 0, result.output


def _reduced(tmp: Path, example: str, keep: dict[str, object]) -> Path:
    """A copy of ``examples/<example>`` whose data files keep only the rows ``keep[name]`` selects."""
    src = ROOT / "examples" / example
    dst = tmp / example
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("data"))
    for name, pick in keep.items():
        rows = read_jsonl(src / "data" / name)
        write_jsonl(dst / "data" / name, pick(rows))
    return dst


def _per_label(n: int, labels: int):
    def pick(rows):
        wanted = sorted({r["label"] for r in rows})[:labels]
        out, seen = [], {}
        for r in rows:
            if r["label"] in wanted and seen.get(r["label"], 0) < n:
                seen[r["label"]] = seen.get(r["label"], 0) + 1
                out.append(r)
        return out
    return pick


@pytest.fixture(scope="module")
def classification(tmp_path_factory) -> Path:
    return _reduced(tmp_path_factory.mktemp("cls"), "classification", {
        "intent-train.jsonl": _per_label(6, 12), "intent-test.jsonl": _per_label(4, 12),
        "clusters.jsonl": _per_label(8, 5)})


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> Path:
    first = lambda n: (lambda rows: rows[:n])  # noqa: E731
    return _reduced(tmp_path_factory.mktemp("probes"), "probes", {
        "banking77-triplets.jsonl": first(40), "stsb-pairs.jsonl": lambda rows: rows[:30] + rows[-30:],
        "stsb-positive-pairs.jsonl": first(30), "stsb-texts.jsonl": first(60),
        "stsb-holdout-train.jsonl": first(40), "stsb-holdout-test.jsonl": first(40)})


def test_classification_and_clustering_run_with_statistics_and_a_map(classification, tmp_path, embedding_cache_dir):
    out = tmp_path / "out"
    result = gate("run", classification / "suite.yaml", "--out", out, "--cache", embedding_cache_dir, "-q",
                  "--thresholds", classification / "thresholds.json", "--resamples", "500")
    assert result.exit_code == 0, result.output  # the same model on both sides: nothing regresses
    res = valid_results(out)
    for mid in ("banking77-intent/accuracy", "banking77-intent/macro_f1", "banking77-clusters/v_measure",
                "banking77-clusters/ari"):
        m = res["metrics"][mid]
        assert 0 < m["candidate"] <= 1 and m["delta"] == 0 and m["p_value"] == 1.0, mid
    assert res["metrics"]["banking77-intent/accuracy"]["test"] == "mcnemar-exact"
    assert res["tasks"]["banking77-clusters"]["map"] == "maps/banking77-clusters.png"
    assert (out / "maps" / "banking77-clusters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "maps/banking77-clusters.png" in (out / "report.md").read_text()


def test_probe_task_types_run_and_merge_from_shards(probes, tmp_path, embedding_cache_dir):
    single = tmp_path / "single"
    result = gate("run", probes / "suite.yaml", "--out", single, "--cache", embedding_cache_dir, "-q",
                  "--resamples", "300")
    assert result.exit_code == 0, result.output
    res = valid_results(single)
    metrics = res["metrics"]
    for mid in ("banking-triplets/accuracy", "banking-triplets/margin", "stsb-pairs/accuracy",
                "stsb-geometry/alignment", "stsb-geometry/uniformity", "stsb-geometry/collapsed",
                "stsb-holdout/train", "stsb-holdout/holdout", "stsb-holdout/gap"):
        assert metrics[mid]["candidate"] is not None and metrics[mid]["ci"] is not None, mid
    assert metrics["stsb-geometry/collapsed"]["candidate"] == 0.0
    assert metrics["stsb-geometry/uniformity"]["higher_is_better"] is False
    assert metrics["stsb-holdout/gap"]["candidate"] == pytest.approx(
        metrics["stsb-holdout/train"]["candidate"] - metrics["stsb-holdout/holdout"]["candidate"])
    for i in (1, 2, 3):
        shard = gate("run", probes / "suite.yaml", "--out", tmp_path / f"s{i}", "--cache", embedding_cache_dir,
                     "-q", "--resamples", "300", "--shard", f"{i}/3")
        assert shard.exit_code == 0, shard.output
    meta = json.loads((tmp_path / "s2" / "shard.json").read_text())
    assert "stsb-geometry" not in meta["tasks"]  # needs every text at once: whole in shard 1
    merged = gate("merge", tmp_path / "s1", tmp_path / "s2", tmp_path / "s3", "--out", tmp_path / "m", "-q")
    assert merged.exit_code == 0, merged.output
    a, b = valid_results(single), valid_results(tmp_path / "m")
    a.pop("created_at"), b.pop("created_at")
    assert a == b
    assert (single / "examples.jsonl").read_text() == (tmp_path / "m" / "examples.jsonl").read_text()


def test_what_scoring_notices_survives_a_merge(classification, tmp_path, embedding_cache_dir):
    """A probe stopped at max_iter is noted while scoring; the merged results must carry the note too."""
    suite = classification / "suite.yaml"
    stopped = tmp_path / "suite.yaml"
    stopped.write_text(suite.read_text().replace("max_iter: 1000", "max_iter: 2"), encoding="utf-8")
    shutil.copytree(classification / "data", tmp_path / "data")
    runs = {"single": ()} | {f"s{i}": ("--shard", f"{i}/2") for i in (1, 2)}
    for name, extra in runs.items():
        result = gate("run", stopped, "--out", tmp_path / name, "--cache", embedding_cache_dir, "-q",
                      "--resamples", "200", *extra)
        assert result.exit_code == 0, result.output
    merged = gate("merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "m", "-q")
    assert merged.exit_code == 0, merged.output
    single, joined = valid_results(tmp_path / "single"), valid_results(tmp_path / "m")
    notes = single["tasks"]["banking77-intent"]["notes"]
    assert any("stopped at max_iter=2" in n for n in notes)
    assert joined["tasks"]["banking77-intent"]["notes"] == notes
