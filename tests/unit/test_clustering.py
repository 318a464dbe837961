"""The ``clustering`` task: k-means on embeddings, V-measure and ARI checked against scikit-learn.

Real data: the BANKING77 texts of examples/classification/data/clusters.jsonl (10 intents), a slice
of them embedded by the real default model where a test says ``model``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, v_measure_score

from gate.errors import EXIT_BAD_INPUT, BadInput
from gate.runner import EmbeddingTable, normalize
from gate.stats import paired_delta
from gate.suite import TaskSpec
from gate.tasks.clustering import METRICS, ClusteringTask, align_clusters, ari, ari_rows, v_measure, v_measure_rows
from tests.conftest import ROOT, read_jsonl, write_jsonl

EXAMPLE = ROOT / "examples" / "classification"
ROWS = read_jsonl(EXAMPLE / "data" / "clusters.jsonl")
#: 8 intents x 15 texts (120 texts to embed)
LABELS = sorted({r["label"] for r in ROWS})[:8]
SMALL = [r for r in ROWS if r["label"] in LABELS]
SMALL = [r for i, r in enumerate(SMALL) if sum(q["label"] == r["label"] for q in SMALL[:i]) < 15]


def spec(folder: Path, **fields) -> TaskSpec:
    return TaskSpec(name="clusters", type="clustering", group="g", fields={"data": "data.jsonl", **fields},
                    models={}, pointer="/tasks/1", suite_dir=folder)


def load(folder: Path, rows: list[dict], **fields) -> ClusteringTask:
    write_jsonl(folder / "data.jsonl", rows)
    return ClusteringTask.load(spec(folder, **fields))


def blob_embed(task: ClusteringTask, spread: float = 0.6) -> EmbeddingTable:
    """Unit vectors around one random centre per label: a stand-in model whose clusters are roughly the labels."""
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(len(task.classes), 24))
    x = centres[task.codes] + spread * rng.normal(size=(len(task.codes), 24))
    return EmbeddingTable(task.texts(), normalize(x.astype(np.float32)))


def metric(name: str):
    return next(m for m in METRICS if m.name == name)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> ClusteringTask:
    return load(tmp_path_factory.mktemp("clu"), SMALL)


@pytest.fixture(scope="module")
def real_embed(small, default_embedder) -> EmbeddingTable:
    texts = list(dict.fromkeys(small.texts()))
    return EmbeddingTable(texts, normalize(default_embedder.encode(texts)))


# ------------------------------------------------------------------ loading and bad input


def test_load(small):
    assert small.data.n == len(SMALL) == 120 and small.classes == LABELS and small.k == 8 and small.seed == 0
    assert small.shardable is False and small.example_score is None and not hasattr(small, "select")
    assert small.texts() == [r["text"] for r in SMALL]
    assert small.data.example_ids[:2] == ["1", "2"] and small.data.example_text[0] == SMALL[0]
    assert small.labelled_texts() == ([r["text"] for r in SMALL], [r["label"] for r in SMALL])
    assert [(m.name, m.higher_is_better) for m in small.metrics] == [("v_measure", True), ("ari", True)]


def test_k_and_seed_fields(tmp_path):
    task = load(tmp_path, SMALL, k=3, seed=9)
    assert (task.k, task.seed) == (3, 9)
    dup = load(tmp_path, SMALL[:4] + SMALL[:2] + SMALL[-2:])
    assert dup.data.notes == ["2 texts repeat an earlier text (same embedding)"]


def bad(tmp_path, rows, **fields) -> BadInput:
    with pytest.raises(BadInput) as info:
        load(tmp_path, rows, **fields)
    assert info.value.exit_code == EXIT_BAD_INPUT
    return info.value


@pytest.mark.parametrize("row, message", [
    ({"text": "z"}, "missing 'label' (expected a non-empty string); the row has: text"),
    ({"text": "z", "label": ""}, "field 'label': expected a non-empty string"),
    ({"text": "z", "label": None}, "field 'label': expected a non-empty string, got null"),
    ({"text": "z", "label": 1}, "field 'label': expected a string, got int"),
    ({"label": "x"}, "missing 'text' (expected a non-empty string); the row has: label"),
])
def test_a_bad_row_names_the_file_and_line(tmp_path, row, message):
    err = bad(tmp_path, SMALL[:3] + [row] + SMALL[3:6])
    assert str(err) == f"{tmp_path / 'data.jsonl'}:4: {message}"


def test_one_label_is_bad_input(tmp_path):
    err = bad(tmp_path, SMALL[:5])
    assert str(err) == (f"{tmp_path / 'data.jsonl'}: every row has the label {SMALL[0]['label']!r}; "
                        "clustering is scored against at least 2 labels")


@pytest.mark.parametrize("fields, expected", [
    ({"k": 1}, "/tasks/1/k: expected an integer from 2 to the number of texts (120), got 1"),
    ({"k": 121}, "/tasks/1/k: expected an integer from 2 to the number of texts (120), got 121"),
    ({"k": True}, "/tasks/1/k: expected an integer from 2 to the number of texts (120), got True"),
    ({"k": 2.0}, "/tasks/1/k: expected an integer from 2 to the number of texts (120), got 2.0"),
    ({"seed": -1}, "/tasks/1/seed: expected an integer from 0 to 2147483647, got -1"),
    ({"seed": "0"}, "/tasks/1/seed: expected an integer from 0 to 2147483647, got '0'"),
])
def test_bad_settings_point_at_the_field(tmp_path, fields, expected):
    assert str(bad(tmp_path, SMALL, **fields)) == expected


# ------------------------------------------------------------------ metrics


def test_metrics_by_hand():
    same = (np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))  # the labels, renamed
    assert v_measure(*same) == 1.0 and ari(*same) == 1.0
    crossed = (np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))  # every pair split the wrong way
    assert v_measure(*crossed) == 0.0
    assert ari(*crossed) == pytest.approx(-0.5)  # pairs: TP 0, FP 2, FN 2, TN 8 -> 2(0 - 4) / (2*10 + 2*10)
    assert np.isnan(v_measure(np.array([], np.int64), np.array([], np.int64)))
    rows = np.array([same[0], crossed[0]]), np.array([same[1], crossed[1]])
    assert v_measure_rows(*rows) == pytest.approx([1.0, 0.0]) and ari_rows(*rows) == pytest.approx([1.0, -0.5])


def test_batched_metrics_equal_scikit_learn_on_resamples():
    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(8), 15)
    cluster = np.where(rng.random(120) < 0.7, label, rng.integers(0, 10, size=120))
    idx = rng.integers(0, 120, size=(300, 120))
    idx[0] = 0  # one example repeated: one label and one cluster
    idx[1] = np.where(np.arange(120) < 60, 0, 14)  # two examples of label 0
    idx[2] = np.flatnonzero(label == 3)[np.arange(120) % 15]  # one label, several clusters
    ls, cs = label[idx], cluster[idx]
    v, a = v_measure_rows(ls, cs), ari_rows(ls, cs)
    for r in range(len(idx)):
        assert v[r] == pytest.approx(v_measure_score(ls[r], cs[r]), abs=1e-12), r
        assert a[r] == pytest.approx(adjusted_rand_score(ls[r], cs[r]), abs=1e-12), r


def test_batched_metrics_chunk_large_tables(monkeypatch):
    import gate.tasks.clustering as C

    rng = np.random.default_rng(2)
    label, cluster = rng.integers(0, 5, size=(40, 30)), rng.integers(0, 7, size=(40, 30))
    whole_v, whole_a = v_measure_rows(label, cluster), ari_rows(label, cluster)
    monkeypatch.setattr(C, "_CHUNK_CELLS", 5 * 7 * 3)  # three rows per chunk
    assert np.array_equal(v_measure_rows(label, cluster), whole_v) and np.array_equal(ari_rows(label, cluster), whole_a)


def test_align_clusters_renumbers_without_changing_the_metrics():
    label = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    cluster = np.array([2, 2, 1, 0, 0, 0, 1, 1, 1])
    aligned = align_clusters(cluster, label)
    assert aligned.tolist() == [0, 0, 2, 1, 1, 1, 2, 2, 2]
    # more clusters than labels: the unmatched cluster takes the next code
    more = align_clusters(np.array([3, 3, 0, 1, 1, 1, 2, 2, 2]), label)
    assert more.tolist() == [0, 0, 3, 1, 1, 1, 2, 2, 2]
    # fewer clusters than labels: the ids are codes of their best labels
    assert align_clusters(np.array([5, 5, 5, 5, 5, 5, 0, 0, 0]), label).tolist() in ([0] * 6 + [2] * 3,
                                                                                   [1] * 6 + [2] * 3)
    rng = np.random.default_rng(4)
    for _ in range(20):
        lab, clu = rng.integers(0, 6, size=50), rng.integers(0, 9, size=50)
        new = align_clusters(clu, lab)
        assert len(set(zip(clu, new))) == len(set(clu)) == len(set(new))  # a bijection
        assert v_measure(lab, new) == pytest.approx(v_measure(lab, clu), abs=1e-12)
        assert ari(lab, new) == ari(lab, clu)


def test_scores_metrics_and_determinism(small):
    embed = blob_embed(small)
    s = small.score(embed)
    assert set(s.arrays) == {"cluster", "label"} and s.extras is None
    assert s.arrays["cluster"].dtype == np.int64 and np.array_equal(s.arrays["label"], small.codes)
    raw = KMeans(n_clusters=8, n_init=10, random_state=0).fit_predict(np.asarray(embed(small.texts()), np.float64))
    assert len(set(zip(raw, s.arrays["cluster"]))) == len(set(raw))  # the same partition, renumbered
    assert metric("v_measure").compute(s.arrays) == pytest.approx(v_measure_score(small.codes, raw), abs=1e-12)
    assert metric("ari").compute(s.arrays) == pytest.approx(adjusted_rand_score(small.codes, raw), abs=1e-12)
    again = small.score(embed)
    assert np.array_equal(again.arrays["cluster"], s.arrays["cluster"])
    perm = np.random.default_rng(1).permutation(small.data.n)
    for m in METRICS:
        assert m.compute({k: v[perm] for k, v in s.arrays.items()}) == pytest.approx(m.compute(s.arrays), abs=1e-12)


def test_the_seed_and_k_reach_kmeans(tmp_path, small):
    task = load(tmp_path, SMALL, k=5, seed=3)
    embed = blob_embed(task, spread=1.5)
    raw = KMeans(n_clusters=5, n_init=10, random_state=3).fit_predict(np.asarray(embed(task.texts()), np.float64))
    got = task.score(embed).arrays["cluster"]
    assert len(set(got)) == 5 and len(set(zip(raw, got))) == 5


def test_fewer_distinct_points_than_k_is_a_note(tmp_path):
    rows = [{"text": f"t{i % 3}", "label": "ab"[i % 2]} for i in range(8)]
    task = load(tmp_path, rows, k=4)
    task.score(EmbeddingTable(["t0", "t1", "t2"], normalize(np.eye(3, 8, dtype=np.float32))))
    assert task.data.notes[-1] == ("k-means found fewer than k=4 distinct clusters on a model's embeddings "
                                   "(fewer distinct points than k)")


def test_batched_metrics_give_the_same_statistics(small):
    base = small.score(blob_embed(small, spread=0.6)).arrays
    cand = small.score(blob_embed(small, spread=0.9)).arrays
    for m in METRICS:
        looped = paired_delta(m.compute, base, cand, resamples=200, seed=2)
        batched = paired_delta(m.compute, base, cand, resamples=200, seed=2, batch=m.batch)
        assert batched.delta == looped.delta and batched.p_value == looped.p_value
        assert batched.ci == pytest.approx(looped.ci, abs=1e-12)


@pytest.mark.model
def test_metrics_equal_scikit_learn_on_real_embeddings(small, real_embed):
    s = small.score(real_embed)
    x = np.asarray(real_embed(small.texts()), dtype=np.float64)
    raw = KMeans(n_clusters=8, n_init=10, random_state=0).fit_predict(x)
    assert len(set(zip(raw, s.arrays["cluster"]))) == len(set(raw)) == 8
    v, a = metric("v_measure").compute(s.arrays), metric("ari").compute(s.arrays)
    assert v == pytest.approx(v_measure_score(small.codes, raw), abs=1e-12)
    assert a == pytest.approx(adjusted_rand_score(small.codes, raw), abs=1e-12)
    assert 0.5 < v < 1.0 and 0.3 < a < 1.0  # real intents cluster well, not perfectly
    assert np.array_equal(small.score(real_embed).arrays["cluster"], s.arrays["cluster"])
    # the aligned ids agree with the labels on most texts
    assert np.mean(s.arrays["cluster"] == small.codes) > 0.6


def test_example_suite_clustering_task_loads():
    suite = yaml.safe_load((EXAMPLE / "suite.yaml").read_text(encoding="utf-8"))
    task = next(t for t in suite["tasks"] if t["type"] == "clustering")
    fields = {k: v for k, v in task.items() if k not in ("name", "type", "group")}
    loaded = ClusteringTask.load(TaskSpec(name=task["name"], type="clustering", group=task["group"], fields=fields,
                                          models={}, pointer="/tasks/1", suite_dir=EXAMPLE))
    assert loaded.data.n == 200 and loaded.k == 10 and loaded.data.notes == []
