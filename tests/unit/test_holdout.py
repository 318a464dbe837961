"""The ``holdout`` task: an inner metric on a train and a holdout split, and their gap."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from gate.errors import BadInput
from gate.suite import TaskSpec
from gate.tasks.holdout import HoldoutTask
from gate.tasks.pairs import PairsTask
from gate.tasks.sts import STSTask
from tests.conftest import task_spec, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
STSB = ROOT / "examples" / "demo" / "data" / "stsb" / "test.jsonl"
PROBES = ROOT / "examples" / "probes"


write = write_jsonl


def spec(tmp_path: Path, **fields) -> TaskSpec:
    return task_spec(tmp_path, "holdout", "ho", **fields)


def hashed_embed(dim: int = 16, seed: int = 0):
    def embed(texts: list[str]) -> np.ndarray:
        x = np.array([np.random.default_rng([seed, zlib.crc32(t.encode())]).normal(size=dim) for t in texts])
        x = x.reshape(len(texts), dim)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return embed


def stsb_rows() -> list[dict]:
    return [json.loads(line) for line in STSB.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def sts_split(tmp_path) -> Path:
    rows = stsb_rows()
    write(tmp_path / "train.jsonl", rows[:60])
    write(tmp_path / "holdout.jsonl", rows[60:100])
    return tmp_path


def metric(task, name):
    return next(m for m in task.metrics if m.name == name)


def test_sts_holdout_equals_two_sts_tasks(sts_split):
    task = HoldoutTask.load(spec(sts_split, inner="sts", train="train.jsonl", holdout="holdout.jsonl",
                                 metric="spearman"))
    assert [(m.name, m.higher_is_better) for m in task.metrics] == [("train", True), ("holdout", True),
                                                                    ("gap", False)]
    assert task.data.n == 100 and task.data.example_ids[0] == "train:1" and task.data.example_ids[60] == "holdout:1"
    assert set(task.data.data_sha256) == {"train", "holdout"}
    assert not hasattr(task, "kind") and getattr(task, "shardable", True)
    assert task.example_score == ("rank_error", False)
    embed = hashed_embed()
    s = task.score(embed)
    got = {m.name: m.compute(s.arrays) for m in task.metrics}
    for split in ("train", "holdout"):
        inner = STSTask.load(replace(spec(sts_split), fields={"data": f"{split}.jsonl"}))
        arrays = inner.score(embed).arrays
        assert got[split] == pytest.approx(spearmanr(arrays["cosine"], arrays["gold"]).statistic, abs=1e-12)
    assert got["gap"] == pytest.approx(got["train"] - got["holdout"], abs=1e-15)
    assert [metric(task, n).count(s.arrays) for n in ("train", "holdout")] == [60, 40]
    np.testing.assert_array_equal(s.arrays["split"], [0] * 60 + [1] * 40)
    # the inner task's whole-set per-example values, each split ranked on its own
    from gate.tasks.sts import rank_error

    shown = task.example_values(s.arrays)
    np.testing.assert_allclose(shown["rank_error"][:60], rank_error(s.arrays["cosine"][:60], s.arrays["gold"][:60]))
    np.testing.assert_allclose(shown["rank_error"][60:], rank_error(s.arrays["cosine"][60:], s.arrays["gold"][60:]))
    order = np.random.default_rng(0).permutation(100)  # any order of the examples (a merge of shards)
    np.testing.assert_allclose(task.example_values({k: v[order] for k, v in s.arrays.items()})["rank_error"],
                               shown["rank_error"][order])
    pearson = HoldoutTask.load(spec(sts_split, inner="sts", train="train.jsonl", holdout="holdout.jsonl",
                                    metric="pearson"))
    a = pearson.score(embed).arrays
    keep = a["split"] == 1
    assert metric(pearson, "holdout").compute(a) == pytest.approx(pearsonr(a["cosine"][keep], a["gold"][keep])[0])


def test_pairs_holdout_of_triplets_uses_the_exact_mean_tests(tmp_path):
    rows = [{"anchor": f"a{i}", "positive": f"p{i}", "negative": f"n{i}", "category": f"c{i % 2}"} for i in range(50)]
    write(tmp_path / "train.jsonl", rows[:30])
    write(tmp_path / "holdout.jsonl", rows[30:])
    task = HoldoutTask.load(spec(tmp_path, inner="pairs", train="train.jsonl", holdout="holdout.jsonl",
                                 metric="accuracy"))
    s = task.score(hashed_embed())
    assert "category" not in s.arrays  # the splits number their categories separately
    correct = s.arrays["correct"]
    assert metric(task, "train").compute(s.arrays) == pytest.approx(correct[:30].mean())
    assert metric(task, "holdout").compute(s.arrays) == pytest.approx(correct[30:].mean())
    assert metric(task, "gap").compute(s.arrays) == pytest.approx(correct[:30].mean() - correct[30:].mean())
    assert metric(task, "train").mean is not None and metric(task, "gap").mean is None
    assert task.example_score == ("margin", True)


def test_pairs_holdout_of_labelled_pairs(tmp_path):
    rows = [{"text_a": f"a{i}", "text_b": f"b{i}", "label": ["similar", "dissimilar"][i % 2]} for i in range(40)]
    write(tmp_path / "train.jsonl", rows[:20])
    write(tmp_path / "holdout.jsonl", rows[20:])
    task = HoldoutTask.load(spec(tmp_path, inner="pairs", train="train.jsonl", holdout="holdout.jsonl",
                                 metric="margin"))
    embed = hashed_embed()
    a = task.score(embed).arrays
    inner = PairsTask.load(replace(spec(tmp_path), fields={"data": "holdout.jsonl"}))
    expected = next(m for m in inner.metrics if m.name == "margin").compute(inner.score(embed).arrays)
    assert metric(task, "holdout").compute(a) == pytest.approx(expected, abs=1e-15)


def test_select_scores_exactly_the_selected_examples(sts_split):
    task = HoldoutTask.load(spec(sts_split, inner="sts", train="train.jsonl", holdout="holdout.jsonl",
                                 metric="spearman"))
    embed = hashed_embed()
    full = task.score(embed)
    idx = [75, 3, 59, 60, 99, 10, 61]  # both splits, interleaved
    part = task.select(idx)
    assert part.data.example_ids == [task.data.example_ids[i] for i in idx]
    got = part.score(embed)
    for k in ("cosine", "gold", "split"):
        np.testing.assert_array_equal(got.arrays[k], full.arrays[k][idx])
    again = part.select([6, 0, 2])  # a selection of a selection
    assert again.data.example_ids == [task.data.example_ids[i] for i in (61, 75, 59)]
    np.testing.assert_array_equal(again.score(embed).arrays["cosine"], full.arrays["cosine"][[61, 75, 59]])
    only_train = task.select([5, 6, 7])
    assert only_train.score(embed).arrays["split"].tolist() == [0, 0, 0]


def test_statistics_on_resamples(sts_split):
    from gate.compare import compare_metric

    task = HoldoutTask.load(spec(sts_split, inner="sts", train="train.jsonl", holdout="holdout.jsonl",
                                 metric="spearman"))
    b, c = task.score(hashed_embed(16, 1)).arrays, task.score(hashed_embed(24, 2)).arrays
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = rng.integers(0, 100, size=100)
        for m in task.metrics:
            value = m.compute({k: v[idx] for k, v in b.items()})
            assert isinstance(value, float) and np.isfinite(value), m.name
    for m in task.metrics:
        out = compare_metric(m, f"ho/{m.name}", b, c, seed=0, resamples=100)
        assert out["ci"] is not None and out["p_value"] is not None, (m.name, out)


def test_batch_equals_compute_on_resamples_and_swaps(sts_split):
    from dataclasses import replace as dc_replace

    from gate.compare import compare_metric

    task = HoldoutTask.load(spec(sts_split, inner="sts", train="train.jsonl", holdout="holdout.jsonl",
                                 metric="spearman"))
    b, c = task.score(hashed_embed(16, 1)).arrays, task.score(hashed_embed(24, 2)).arrays
    idx = np.random.default_rng(4).integers(0, 100, size=(9, 100))
    idx[0] = np.arange(60).repeat(2)[:100]  # a resample without a holdout example: NaN
    stacked = {k: v[idx] for k, v in b.items()}
    for m in task.metrics:
        assert m.batch is not None
        expected = [m.compute({k: v[i] for k, v in b.items()}) for i in idx]
        np.testing.assert_allclose(m.batch(stacked), expected, rtol=1e-12, atol=1e-12, equal_nan=True)
        assert np.isnan(expected[0]) == (m.name != "train")
        # the batched statistics are the loop's, draw for draw
        fast = compare_metric(m, f"ho/{m.name}", b, c, seed=3, resamples=100)
        slow = compare_metric(dc_replace(m, batch=None), f"ho/{m.name}", b, c, seed=3, resamples=100)
        assert fast["ci"] == pytest.approx(slow["ci"], abs=1e-12) and fast["p_value"] == slow["p_value"]


def test_unsupported_inner_type(sts_split):
    with pytest.raises(BadInput) as err:
        HoldoutTask.load(spec(sts_split, inner="retrieval", train="train.jsonl", holdout="holdout.jsonl",
                              metric="ndcg@10"))
    assert err.value.location == "/tasks/0/inner"
    assert "unsupported inner task type 'retrieval'; expected one of: pairs, sts" in err.value.detail


@pytest.mark.parametrize("inner, rows, valid", [
    ("sts", None, "spearman, pearson"),
    ("pairs", [{"anchor": "a", "positive": "b", "negative": "c", "category": "x"}], "accuracy, margin"),
])
def test_unknown_metric_lists_the_valid_ones(sts_split, inner, rows, valid):
    if rows:
        write(sts_split / "train.jsonl", rows)
        write(sts_split / "holdout.jsonl", rows)
    with pytest.raises(BadInput) as err:
        HoldoutTask.load(spec(sts_split, inner=inner, train="train.jsonl", holdout="holdout.jsonl",
                              metric="ndcg@10"))
    assert err.value.location == "/tasks/0/metric"
    assert err.value.detail == f"unknown metric 'ndcg@10' of a {inner} task; expected one of: {valid}"


def test_bad_rows_are_located_in_their_split(sts_split):
    rows = stsb_rows()[:5]
    rows[3] = {"sentence1": "a", "sentence2": "b", "score": "high"}
    path = write(sts_split / "holdout.jsonl", rows)
    with pytest.raises(BadInput) as err:
        HoldoutTask.load(spec(sts_split, inner="sts", train="train.jsonl", holdout="holdout.jsonl",
                              metric="spearman"))
    assert (err.value.where, err.value.location) == (str(path), "4")
    assert "field 'score'" in err.value.detail


def test_pairs_splits_of_different_kinds(tmp_path):
    write(tmp_path / "train.jsonl", [{"anchor": "a", "positive": "b", "negative": "c"}])
    path = write(tmp_path / "holdout.jsonl", [{"text_a": "a", "text_b": "b", "label": "similar"},
                                              {"text_a": "a", "text_b": "c", "label": "dissimilar"}])
    with pytest.raises(BadInput) as err:
        HoldoutTask.load(spec(tmp_path, inner="pairs", train="train.jsonl", holdout="holdout.jsonl",
                              metric="accuracy"))
    assert err.value.where == str(path)
    assert "a file of pairs, but the train file train.jsonl holds triplets" in err.value.detail


def test_probe_files_load():
    task = HoldoutTask.load(spec(PROBES, inner="sts", train="data/stsb-holdout-train.jsonl",
                                 holdout="data/stsb-holdout-test.jsonl", metric="spearman"))
    assert task.data.n > 100


def test_probes_suite_loads_every_task():
    """The example suite end to end through the suite reader and the type registry (once they know the types)."""
    from gate.documents import load_schema
    from gate.suite import load_suite
    from gate.tasks import load_task

    types = load_schema("suite")["$defs"]["task"]["properties"]["type"]["enum"]
    assert {"pairs", "geometry", "holdout"} <= set(types)
    suite = load_suite(PROBES / "suite.yaml")
    loaded = {t.name: load_task(t) for t in suite.tasks}
    assert {name: type(task).__name__ for name, task in loaded.items()} == {
        "banking-triplets": "PairsTask", "stsb-pairs": "PairsTask", "stsb-geometry": "GeometryTask",
        "stsb-holdout": "HoldoutTask"}
    assert sum(len(set(task.texts())) for task in loaded.values()) < 3000  # small enough for a CPU
