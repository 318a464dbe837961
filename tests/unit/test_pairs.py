"""The ``pairs`` task: pair and triplet probes, metrics checked against sklearn and by hand, bad input located."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gate.errors import BadInput
from gate.suite import TaskSpec
from gate.tasks.pairs import PairsTask, auc, label_margin
from tests.conftest import task_spec

ROOT = Path(__file__).resolve().parents[2]
PROBES = ROOT / "examples" / "probes"


def spec(tmp_path: Path, **fields) -> TaskSpec:
    return task_spec(tmp_path, "pairs", "probe", **fields)


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def hashed_embed(dim: int = 16):
    """A deterministic stand-in for a model: each text gets a fixed random unit vector."""

    def embed(texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=dim) for t in texts]
        x = np.array(rows, dtype=np.float32).reshape(len(texts), dim)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return embed


def table_embed(vectors: dict[str, list[float]]):
    def embed(texts: list[str]) -> np.ndarray:
        x = np.array([vectors[t] for t in texts], dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return embed


def metric(task, name):
    return next(m for m in task.metrics if m.name == name)


# ----------------------------------------------------------------------------- metric functions


def test_auc_matches_sklearn_with_ties_and_resamples():
    rng = np.random.default_rng(3)
    cos = np.round(rng.normal(size=200), 1)  # many ties
    sim = (rng.random(200) < 0.4).astype(float)
    assert auc(cos, sim) == pytest.approx(roc_auc_score(sim, cos), abs=1e-12)
    idx = rng.integers(0, 200, size=(5, 200))  # bootstrap resamples: repeated rows
    rows = auc(cos[idx], sim[idx])
    for r in range(5):
        assert rows[r] == pytest.approx(roc_auc_score(sim[idx[r]], cos[idx[r]]), abs=1e-12)
    keep = rng.random(200) < 0.5
    assert auc(cos, sim, keep) == pytest.approx(roc_auc_score(sim[keep], cos[keep]), abs=1e-12)


def test_auc_is_the_share_of_correctly_ordered_pairs():
    # similar rows 0.9, 0.5; dissimilar 0.6, 0.5, 0.1: 6 (similar, dissimilar) pairs, 4 right, 1 tie
    cos, sim = np.array([0.9, 0.5, 0.6, 0.5, 0.1]), np.array([1, 1, 0, 0, 0])
    assert auc(cos, sim) == pytest.approx((4 + 0.5) / 6)
    assert label_margin(cos, sim) == pytest.approx(0.7 - 0.4)
    assert math.isnan(auc(cos[:2], sim[:2])) and math.isnan(label_margin(cos[2:], sim[2:]))


# ----------------------------------------------------------------------------- pairs


PAIR_ROWS = [
    {"text_a": "cat", "text_b": "kitten", "label": "similar", "category": "animals"},
    {"text_a": "cat", "text_b": "car", "label": "dissimilar", "category": "animals"},
    {"text_a": "dog", "text_b": "puppy", "label": "similar", "category": "animals"},
    {"text_a": "red", "text_b": "crimson", "label": "similar", "category": "colours"},
    {"text_a": "red", "text_b": "bread", "label": "dissimilar", "category": "colours"},
    {"text_a": "dog", "text_b": "fog", "label": "dissimilar"},
]
VECTORS = {"cat": [1, 0], "kitten": [0.9, 0.1], "car": [0.2, 1], "dog": [1, 0.2], "puppy": [0.3, 1],
           "fog": [0.9, 0.3], "red": [0, 1], "crimson": [0.1, 1], "bread": [1, 0.1]}


def test_pairs_metrics_and_slices_by_hand(tmp_path):
    task = PairsTask.load(spec(tmp_path, data=str(write(tmp_path / "p.jsonl", PAIR_ROWS))))
    assert task.form == "pairs" and task.categories == ["animals", "colours"]
    assert not hasattr(task, "kind")  # the runner takes a task with a ``kind`` for a generative one
    assert [m.name for m in task.metrics] == ["accuracy", "margin", "accuracy[animals]", "margin[animals]",
                                              "accuracy[colours]", "margin[colours]"]
    assert all(m.higher_is_better for m in task.metrics)
    assert task.data.notes == ["1 of 6 rows have no category (counted only in the overall metrics)"]
    scores = task.score(table_embed(VECTORS))
    x = table_embed(VECTORS)
    cos = np.array([float(x([r["text_a"]])[0] @ x([r["text_b"]])[0]) for r in PAIR_ROWS])
    sim = np.array([r["label"] == "similar" for r in PAIR_ROWS], dtype=float)
    np.testing.assert_allclose(scores.arrays["cosine"], cos, rtol=1e-6)
    a = scores.arrays
    assert metric(task, "accuracy").compute(a) == pytest.approx(roc_auc_score(sim, cos))
    assert metric(task, "margin").compute(a) == pytest.approx(cos[sim == 1].mean() - cos[sim == 0].mean())
    animals = np.array([0, 1, 2])
    assert metric(task, "accuracy[animals]").compute(a) == pytest.approx(roc_auc_score(sim[animals], cos[animals]))
    assert metric(task, "margin[colours]").compute(a) == pytest.approx(cos[3] - cos[4])
    assert metric(task, "margin[colours]").count(a) == 2
    # the per-example view: cosine for a similar pair, minus cosine for a dissimilar one
    assert task.example_score == ("signed_cosine", True)
    assert [e["signed_cosine"] for e in scores.extras] == pytest.approx(np.where(sim == 1, cos, -cos))


def test_pairs_batch_equals_compute_on_each_resample(tmp_path):
    rows = [{"text_a": f"a{i}", "text_b": f"b{i}", "label": "similar" if i % 3 else "dissimilar",
             "category": "x" if i % 2 else "y"} for i in range(60)]
    task = PairsTask.load(spec(tmp_path, data=str(write(tmp_path / "p.jsonl", rows))))
    arrays = task.score(hashed_embed()).arrays
    idx = np.random.default_rng(0).integers(0, 60, size=(7, 60))
    stacked = {k: v[idx] for k, v in arrays.items()}
    for m in task.metrics:
        assert m.batch is not None
        expected = [m.compute({k: v[i] for k, v in arrays.items()}) for i in idx]
        np.testing.assert_allclose(m.batch(stacked), expected, rtol=1e-12, atol=1e-12)
        assert all(np.isfinite(expected))


# ----------------------------------------------------------------------------- triplets


def test_triplet_metrics_by_hand(tmp_path):
    rows = [{"anchor": "a", "positive": "p1", "negative": "n1", "category": "one"},
            {"anchor": "a", "positive": "p2", "negative": "n2", "category": "two"},
            {"anchor": "a", "positive": "p3", "negative": "n3", "category": "two"}]
    # unit vectors at known angles to the anchor (1, 0): cosines 0.8 / 0.6, 0.6 / 0.8, 1.0 / 0.0
    vectors = {"a": [1, 0], "p1": [0.8, 0.6], "n1": [0.6, 0.8], "p2": [0.6, 0.8], "n2": [0.8, 0.6],
               "p3": [1, 0], "n3": [0, 1]}
    task = PairsTask.load(spec(tmp_path, data=str(write(tmp_path / "t.jsonl", rows))))
    assert task.form == "triplets" and task.example_score == ("margin", True)
    s = task.score(table_embed(vectors))
    np.testing.assert_allclose(s.arrays["margin"], [0.2, -0.2, 1.0], atol=1e-6)
    np.testing.assert_array_equal(s.arrays["correct"], [1, 0, 1])
    a = s.arrays
    assert metric(task, "accuracy").compute(a) == pytest.approx(2 / 3)
    assert metric(task, "margin").compute(a) == pytest.approx(1.0 / 3, abs=1e-6)
    assert metric(task, "accuracy[two]").compute(a) == pytest.approx(0.5)
    assert metric(task, "margin[one]").compute(a) == pytest.approx(0.2, abs=1e-6)
    assert metric(task, "accuracy[two]").count(a) == 2
    # the accuracy is a mean of 0/1 outcomes: the paired statistics use their exact tests on it
    assert metric(task, "accuracy").mean is not None and metric(task, "margin[two]").mean is not None
    assert s.extras[0] == {"cos_positive": pytest.approx(0.8, abs=1e-6), "cos_negative": pytest.approx(0.6, abs=1e-6)}


def test_triplet_ties_count_as_wrong(tmp_path):
    rows = [{"anchor": "a", "positive": "p", "negative": "p"}]
    task = PairsTask.load(spec(tmp_path, data=str(write(tmp_path / "t.jsonl", rows))))
    assert metric(task, "accuracy").compute(task.score(hashed_embed()).arrays) == 0.0


# ----------------------------------------------------------------------------- select, statistics


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
def test_select_scores_exactly_the_selected_rows(tmp_path, kind):
    if kind == "pairs":
        rows = [{"text_a": f"a{i}", "text_b": f"b{i}", "label": ["similar", "dissimilar"][i % 2],
                 **({"category": f"c{i % 3}"} if i % 4 else {})} for i in range(30)]
    else:
        rows = [{"anchor": f"a{i}", "positive": f"p{i}", "negative": f"n{i}", "category": f"c{i % 3}"}
                for i in range(30)]
    task = PairsTask.load(spec(tmp_path, data=str(write(tmp_path / "d.jsonl", rows))))
    full = task.score(hashed_embed())
    idx = [17, 3, 4, 29, 0, 12]
    part = task.select(idx)
    assert part.data.n == 6 and part.data.example_ids == [task.data.example_ids[i] for i in idx]
    assert part.categories == task.categories  # category codes stay the same in every shard
    assert [m.name for m in part.metrics] == [m.name for m in task.metrics]
    assert len(part.texts()) == len(task.texts()) // 30 * 6
    got = part.score(hashed_embed())
    for k, v in full.arrays.items():
        np.testing.assert_array_equal(got.arrays[k], v[idx])
    assert got.extras == [full.extras[i] for i in idx]
    assert task.data.n == 30  # the original is unchanged


@pytest.mark.parametrize("kind", ["pairs", "triplets"])
def test_every_metric_is_finite_on_bootstrap_resamples(tmp_path, kind):
    if kind == "pairs":
        rows = [{"text_a": f"a{i}", "text_b": f"b{i}", "label": ["similar", "dissimilar"][i % 2],
                 "category": f"c{i % 3}"} for i in range(40)]
    else:
        rows = [{"anchor": f"a{i}", "positive": f"p{i}", "negative": f"n{i}", "category": f"c{i % 3}"}
                for i in range(40)]
    task = PairsTask.load(spec(tmp_path, data=str(write(tmp_path / "d.jsonl", rows))))
    arrays = task.score(hashed_embed()).arrays
    rng = np.random.default_rng(1)
    for _ in range(20):
        idx = rng.integers(0, 40, size=40)
        for m in task.metrics:
            value = m.compute({k: v[idx] for k, v in arrays.items()})
            assert isinstance(value, float) and np.isfinite(value), m.name


def test_compare_metric_runs_on_pairs(tmp_path):
    from gate.compare import compare_metric

    rows = [{"text_a": f"a{i}", "text_b": f"b{i}", "label": ["similar", "dissimilar"][i % 2]} for i in range(40)]
    task = PairsTask.load(spec(tmp_path, data=str(write(tmp_path / "d.jsonl", rows))))
    b, c = task.score(hashed_embed(16)).arrays, task.score(hashed_embed(24)).arrays
    for m in task.metrics:
        out = compare_metric(m, f"probe/{m.name}", b, c, seed=1, resamples=200)
        assert out["ci"] is not None and out["p_value"] is not None, out


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("rows, line, message", [
    ([{"text_a": "a", "text_b": "b", "label": "similar"}, {"text_a": "a", "text_b": "c", "label": "related"}],
     2, "unknown label 'related'; expected 'similar' or 'dissimilar'"),
    ([{"text_a": "a", "text_b": "b", "label": "similar"}, {"text_a": "a", "text_b": "c"}],
     2, "missing 'label'"),
    ([{"text_a": "a", "text_b": "b", "label": "similar"}, "", {"anchor": "a", "positive": "b", "negative": "c"}],
     3, "field 'anchor' in a file of pairs (detected from its first row, line 1)"),
    ([{"anchor": "a", "positive": "b", "negative": "c"}, {"text_a": "a", "text_b": "c", "label": "dissimilar"}],
     2, "field 'text_a' in a file of triplets"),
    ([{"anchor": "a", "positive": "b", "negative": "c", "category": "Animals"}],
     1, "field 'category': expected 1-64 lowercase letters"),
    ([{"anchor": "a", "positive": " ", "negative": "c"}], 1, "missing 'positive'"),
    ([{"anchor": "a", "positive": "b", "negative": "c", "text_b": "d"}], 1, "both pair fields"),
    ([{"text": "a"}], 1, "expected a pair row"),
    ([{"text_a": "a", "text_b": "b", "label": 1}], 1, "field 'label': expected a string, got int"),
])
def test_bad_rows_name_file_and_line(tmp_path, rows, line, message):
    path = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(BadInput) as err:
        PairsTask.load(spec(tmp_path, data="bad.jsonl"))
    assert err.value.where == str(path) and err.value.location == str(line)
    assert message in err.value.detail
    assert err.value.exit_code == 2


def test_a_category_with_one_label_has_no_slice(tmp_path):
    rows = [{"text_a": "a", "text_b": "b", "label": "similar", "category": "x"},
            {"text_a": "a", "text_b": "c", "label": "dissimilar", "category": "x"},
            {"text_a": "a", "text_b": "d", "label": "similar", "category": "y"}]
    task = PairsTask.load(spec(tmp_path, data=str(write(tmp_path / "p.jsonl", rows))))
    assert [m.name for m in task.metrics] == ["accuracy", "margin", "accuracy[x]", "margin[x]"]
    assert task.data.notes == ["category 'y' has only similar pairs, so it has no accuracy[y] or margin[y] "
                               "(they compare the two labels)"]


def test_a_single_label_is_bad_input(tmp_path):
    write(tmp_path / "one.jsonl", [{"text_a": "a", "text_b": "b", "label": "similar"}] * 3)
    with pytest.raises(BadInput, match="every label is 'similar'"):
        PairsTask.load(spec(tmp_path, data="one.jsonl"))


def test_csv_pairs(tmp_path):
    (tmp_path / "p.csv").write_text("text_a,text_b,label\nx,y,similar\nx,z,dissimilar\nq,r,maybe\n", encoding="utf-8")
    with pytest.raises(BadInput) as err:
        PairsTask.load(spec(tmp_path, data="p.csv"))
    assert err.value.location == "4"


# ----------------------------------------------------------------------------- the example suite's data


def test_probe_files_load():
    triplets = PairsTask.load(spec(PROBES, data="data/banking77-triplets.jsonl"))
    assert (triplets.form, triplets.data.n) == ("triplets", 231) and not triplets.data.notes
    assert triplets.categories == ["card", "cash", "exchange", "identity", "other", "top_up", "transfer"]
    pairs = PairsTask.load(spec(PROBES, data="data/stsb-pairs.jsonl"))
    assert (pairs.form, pairs.data.n, int(pairs.similar.sum())) == ("pairs", 300, 150)


def test_probe_data_rebuilds_byte_for_byte(tmp_path):
    """The committed probe files come out of build_data.py again, from the source rows kept in the repository."""
    source = tmp_path / "source"
    for name, path in {"banking77/test.jsonl": "tool-calling/source/banking77/test.jsonl",
                       "banking77/labels.json": "tool-calling/source/banking77/labels.json",
                       "stsb/test.jsonl": "demo/data/stsb/test.jsonl",
                       "stsb/dev.jsonl": "probes/source/stsb/dev.jsonl"}.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / "examples" / path).read_bytes())
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(PROBES / "build_data.py"), "--source", str(source), "--out", str(out)],
                   check=True)
    built = sorted(p.name for p in out.iterdir())
    assert built == sorted(p.name for p in (PROBES / "data").glob("*.jsonl"))
    for name in built:
        assert (out / name).read_bytes() == (PROBES / "data" / name).read_bytes(), name
