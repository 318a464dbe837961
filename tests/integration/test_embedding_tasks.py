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
    merged = gate("merge", tmp_path / "s1", tmp_path / "s2", tmp_path / "s3", "--out", tmp_path / "m", "-q",
                  "--suite", probes / "suite.yaml")
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
    merged = gate("merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "m", "-q", "--suite", stopped)
    assert merged.exit_code == 0, merged.output
    single, joined = valid_results(tmp_path / "single"), valid_results(tmp_path / "m")
    notes = single["tasks"]["banking77-intent"]["notes"]
    assert any("stopped at max_iter=2" in n for n in notes)
    assert joined["tasks"]["banking77-intent"]["notes"] == notes


def _shards(suite: Path, out: Path, n: int, cache: Path, *extra) -> list[Path]:
    folders = []
    for i in range(1, n + 1):
        result = gate("run", suite, "--out", out / f"s{i}", "--cache", cache, "-q", "--resamples", "200",
                      "--shard", f"{i}/{n}", *extra)
        assert result.exit_code == 0, result.output
        folders.append(out / f"s{i}")
    return folders


def test_a_merge_draws_the_maps_a_single_run_draws(classification, tmp_path, embedding_cache_dir):
    """Maps need every labelled text: each shard keeps its rows' vectors, the merge draws from all of them."""
    suite = classification / "suite.yaml"
    single = gate("run", suite, "--out", tmp_path / "single", "--cache", embedding_cache_dir, "-q",
                  "--resamples", "200")
    assert single.exit_code == 0, single.output
    merged = gate("merge", *_shards(suite, tmp_path, 3, embedding_cache_dir), "--out", tmp_path / "m", "-q",
                  "--suite", suite)
    assert merged.exit_code == 0, merged.output
    a, b = valid_results(tmp_path / "single"), valid_results(tmp_path / "m")
    a.pop("created_at"), b.pop("created_at")
    assert a == b and b["tasks"]["banking77-clusters"]["map"] == "maps/banking77-clusters.png"
    assert (tmp_path / "m" / "report.md").read_text() == (tmp_path / "single" / "report.md").read_text()
    assert (tmp_path / "m" / "maps" / "banking77-clusters.png").read_bytes() == \
        (tmp_path / "single" / "maps" / "banking77-clusters.png").read_bytes()


def test_shards_with_nothing_to_embed_still_merge(classification, tmp_path, embedding_cache_dir):
    """Clustering runs whole in shard 1; shard 2 loads no model and knows no fingerprint, yet belongs to the run."""
    text = (classification / "suite.yaml").read_text()
    only = tmp_path / "suite.yaml"
    only.write_text(text[:text.index("  - name: banking77-intent")] + text[text.index("  - name: banking77-clusters"):],
                    encoding="utf-8")
    shutil.copytree(classification / "data", tmp_path / "data")
    single = gate("run", only, "--out", tmp_path / "single", "--cache", embedding_cache_dir, "-q",
                  "--resamples", "200")
    assert single.exit_code == 0, single.output
    folders = _shards(only, tmp_path, 2, embedding_cache_dir)
    assert json.loads((folders[1] / "shard.json").read_text())["models"]["candidate"]["fingerprint"] is None
    merged = gate("merge", *folders, "--out", tmp_path / "m", "-q", "--suite", only)
    assert merged.exit_code == 0, merged.output
    a, b = valid_results(tmp_path / "single"), valid_results(tmp_path / "m")
    assert a["models"] == b["models"] and b["models"]["candidate"]["fingerprint"].startswith("sha256:")


def test_shards_that_scored_other_data_are_bad_input(classification, tmp_path, embedding_cache_dir):
    """Same row count, other texts: the merge must refuse, not report shard 1's scores for the new texts."""
    work = tmp_path / "work"
    shutil.copytree(classification, work)
    data = work / "data" / "intent-test.jsonl"
    first = _shards(work / "suite.yaml", tmp_path, 2, embedding_cache_dir)[0]
    rows = read_jsonl(data)
    rows[0]["text"] = rows[0]["text"] + " (edited)"
    write_jsonl(data, rows)
    second = gate("run", work / "suite.yaml", "--out", tmp_path / "s2b", "--cache", embedding_cache_dir, "-q",
                  "--resamples", "200", "--shard", "2/2")
    assert second.exit_code == 0, second.output
    merged = gate("merge", first, tmp_path / "s2b", "--out", tmp_path / "m", "-q", "--suite", work / "suite.yaml")
    assert merged.exit_code == 2, merged.output
    assert "task 'banking77-intent': its data (test) differs from what this shard scored" in merged.output


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta.pop("tasks"), "shard.json:1:1: missing required key 'tasks'"),
    (lambda meta: meta.update(shard=[1]), "(/shard): expected [I, N]"),
    (lambda meta: next(iter(meta["tasks"].values())).pop("roles"), "(/tasks/banking77-intent): missing required key 'roles'"),
    (lambda meta: meta.pop("seed"), "shard.json:1:1: missing required key 'seed'"),
    (lambda meta: next(iter(meta["tasks"].values())).update(rows=[6]), "(/tasks/banking77-intent/rows): expected [first, end]"),
    (lambda meta: next(iter(meta["tasks"].values())).update(data_sha256="x"), '(/tasks/banking77-intent/data_sha256): expected object, got string "x"'),
    (lambda meta: next(iter(meta["tasks"].values())).update(notes="a note"), '(/tasks/banking77-intent/notes): expected array, got string "a note"'),
    (lambda meta: next(iter(meta["tasks"].values()))["roles"].update(baseline="yes"), '(/tasks/banking77-intent/roles/baseline): expected boolean, got string "yes"'),
    (lambda meta: next(iter(meta["tasks"].values()))["info"].update(usage="x"), '(/tasks/banking77-intent/info/usage): expected object, got string "x"'),
])
def test_an_edited_shard_file_is_bad_input(classification, tmp_path, embedding_cache_dir, edit, message):
    folders = _shards(classification / "suite.yaml", tmp_path, 2, embedding_cache_dir)
    meta = json.loads((folders[0] / "shard.json").read_text())
    edit(meta)
    (folders[0] / "shard.json").write_text(json.dumps(meta))
    merged = gate("merge", *folders, "--out", tmp_path / "m", "-q", "--suite", classification / "suite.yaml")
    assert merged.exit_code == 2 and message in merged.output and "internal error" not in merged.output


def test_an_edited_extras_file_is_bad_input(classification, tmp_path, embedding_cache_dir):
    folders = _shards(classification / "suite.yaml", tmp_path, 2, embedding_cache_dir)
    (folders[1] / "extras.json").write_text("{}")
    merged = gate("merge", *folders, "--out", tmp_path / "m", "-q", "--suite", classification / "suite.yaml")
    assert merged.exit_code == 2 and "extras.json:1:1: no extras of task 'banking77-intent', which shard.json says this shard scored" in merged.output


def test_shards_of_a_float16_and_a_float32_runner_are_bad_input(classification, tmp_path, embedding_cache_dir,
                                                               monkeypatch):
    """dtype auto: a GPU runner encodes in float16, a CPU runner in float32; their shards are not one run."""
    import gate.providers.sentence_transformers as st

    first = _shards(classification / "suite.yaml", tmp_path, 2, embedding_cache_dir)[0]
    monkeypatch.setattr(st, "_cuda_available", lambda: True)  # as on a GPU runner (the model still runs on the CPU)
    other = gate("run", classification / "suite.yaml", "--out", tmp_path / "gpu", "--cache", embedding_cache_dir,
                 "-q", "--resamples", "200", "--shard", "2/2")
    assert other.exit_code == 0, other.output
    merged = gate("merge", first, tmp_path / "gpu", "--out", tmp_path / "m", "-q",
                  "--suite", classification / "suite.yaml")
    assert merged.exit_code == 2, merged.output
    assert "was run with other model settings" in merged.output and "float16" in merged.output
