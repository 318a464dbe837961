"""The ``geometry`` task: alignment and uniformity (Wang & Isola 2020) by hand and against the paper's formulas."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from gate.errors import BadInput
from gate.suite import TaskSpec
from gate.tasks.geometry import GeometryTask, pair_kernels, pseudo_values, uniformity
from tests.conftest import task_spec, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
PROBES = ROOT / "examples" / "probes"


write = write_jsonl


def spec(tmp_path: Path, **fields) -> TaskSpec:
    return task_spec(tmp_path, "geometry", "geo", **fields)


def table_embed(vectors: dict[str, list[float]]):
    def embed(texts: list[str]) -> np.ndarray:
        x = np.array([vectors[t] for t in texts], dtype=np.float64).reshape(len(texts), -1)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return embed


def hashed_embed(dim: int = 16, shift: float = 0.0):
    """A deterministic stand-in for a model; ``shift`` pulls every vector towards one direction."""

    def embed(texts: list[str]) -> np.ndarray:
        x = np.array([np.random.default_rng(zlib.crc32(t.encode())).normal(size=dim) for t in texts]).reshape(-1, dim)
        x[:, 0] += shift
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return embed


def metric(task, name):
    return next(m for m in task.metrics if m.name == name)


def values(task, arrays) -> dict[str, float]:
    return {m.name: m.compute(arrays) for m in task.metrics}


# The paper's reference code (Wang & Isola 2020, Fig. 5), in numpy:
#   align_loss(x, y, alpha) = (x - y).norm(p=2, dim=1).pow(alpha).mean()
#   uniform_loss(x, t)      = torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()
def paper_align(x, y, alpha=2):
    return float(np.mean(np.linalg.norm(x - y, axis=1) ** alpha))


def paper_uniform(x, t=2):
    return float(np.log(np.mean(np.exp(-t * pdist(x) ** 2))))


def test_hand_made_unit_vectors(tmp_path):
    # texts at 0, 90 and 180 degrees: squared distances 2, 4, 2; cosines 0, -1, 0
    vectors = {"east": [1, 0], "north": [0, 1], "west": [-1, 0], "e2": [0.6, 0.8], "n2": [0, 1]}
    write(tmp_path / "pairs.jsonl", [{"text_a": "east", "text_b": "e2"}, {"text_a": "north", "text_b": "n2"}])
    write(tmp_path / "texts.jsonl", [{"text": "east"}, {"text": "north"}, {"text": "west"}])
    task = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", texts="texts.jsonl"))
    s = task.score(table_embed(vectors))
    got = values(task, s.arrays)
    # ||(1,0) - (0.6,0.8)||^2 = 0.16 + 0.64 = 0.8; the second pair is identical: 0
    assert got["alignment"] == pytest.approx(0.4, abs=1e-6)
    assert got["uniformity"] == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3), abs=1e-6)
    assert got["mean_cosine"] == pytest.approx(-1 / 3, abs=1e-6)
    assert got["collapsed"] == 0.0
    assert [m.higher_is_better for m in task.metrics] == [False] * 4
    assert [metric(task, n).count(s.arrays) for n in ("alignment", "uniformity")] == [2, 3]
    assert task.data.example_ids == ["pair:1", "pair:2", "text:1", "text:2", "text:3"]
    assert s.extras[2:] == [{"mean_cosine_to_others": pytest.approx(-0.5, abs=1e-6)},
                            {"mean_cosine_to_others": pytest.approx(0.0, abs=1e-6)},
                            {"mean_cosine_to_others": pytest.approx(-0.5, abs=1e-6)}]
    # alpha and t as in the paper's reference code
    task = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", texts="texts.jsonl", alpha=1, t=0.5))
    got = values(task, task.score(table_embed(vectors)).arrays)
    assert got["alignment"] == pytest.approx(math.sqrt(0.8) / 2, abs=1e-6)
    assert got["uniformity"] == pytest.approx(math.log((2 * math.exp(-1) + math.exp(-2)) / 3), abs=1e-6)


def test_matches_the_papers_reference_code(tmp_path):
    rows = [{"text_a": f"a{i}", "text_b": f"b{i}"} for i in range(50)]
    write(tmp_path / "pairs.jsonl", rows)
    embed = hashed_embed(8, shift=1.5)
    for t, alpha in [(2, 2), (1, 1), (3.5, 0.5)]:
        task = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", t=t, alpha=alpha))
        got = values(task, task.score(embed).arrays)
        a, b = embed(task.pairs_a).astype(np.float64), embed(task.pairs_b).astype(np.float64)
        sample = embed(task.sample).astype(np.float64)
        assert len(task.sample) == 100  # without a texts file: the distinct texts of the pairs
        assert got["alignment"] == pytest.approx(paper_align(a, b, alpha), rel=1e-6)
        assert got["uniformity"] == pytest.approx(paper_uniform(sample, t), rel=1e-6)
        assert got["uniformity"] == pytest.approx(uniformity(sample, t), rel=1e-9)
        cos = sample @ sample.T
        assert got["mean_cosine"] == pytest.approx(cos[np.triu_indices(100, 1)].mean(), rel=1e-6)


def test_pseudo_values_are_the_jackknife_of_the_pair_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    gauss, _ = pair_kernels(x)
    pv = pseudo_values(gauss)

    def pair_mean(rows):
        return float(np.mean(np.exp(-2 * pdist(rows) ** 2)))

    full = pair_mean(x)
    loo = np.array([pair_mean(np.delete(x, i, axis=0)) for i in range(12)])
    np.testing.assert_allclose(pv, 12 * full - 11 * loo, rtol=1e-10)
    assert pv.mean() == pytest.approx(full, rel=1e-12)


def test_pseudo_values_give_the_u_statistics_standard_error():
    """Resampling the pseudo-values estimates the spread of uniformity over fresh samples; resampling
    each text's mean kernel to the others would give half of it."""
    rng = np.random.default_rng(0)
    n, reps = 150, 200
    logs, se = [], []
    for _ in range(reps):
        x = rng.normal(size=(n, 6))
        x[:, 0] += 1.0
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        gauss, _ = pair_kernels(x)
        pv = pseudo_values(gauss)
        logs.append(np.log(pv.mean()))
        se.append(pv.std(ddof=1) / math.sqrt(n) / pv.mean())  # delta method for the log
    assert np.mean(se) == pytest.approx(np.std(logs), rel=0.2)


def test_collapse_is_flagged(tmp_path):
    rows = [{"text_a": f"a{i}", "text_b": f"b{i}"} for i in range(30)]
    write(tmp_path / "pairs.jsonl", rows)
    task = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl"))
    spread = values(task, task.score(hashed_embed(16)).arrays)
    collapsed = values(task, task.score(hashed_embed(16, shift=20.0)).arrays)
    assert spread["collapsed"] == 0.0 and collapsed["collapsed"] == 1.0
    assert collapsed["mean_cosine"] > 0.9 > spread["mean_cosine"]
    assert collapsed["uniformity"] > -0.5 > -3 > spread["uniformity"]
    assert collapsed["alignment"] < spread["alignment"]  # why alignment alone cannot be trusted
    lenient = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", collapse_cosine=0.999))
    assert values(lenient, lenient.score(hashed_embed(16, shift=20.0)).arrays)["collapsed"] == 0.0


def test_statistics_on_resamples_and_models_of_different_dimensions(tmp_path):
    from gate.compare import compare_metric

    rows = [{"text_a": f"a{i}", "text_b": f"a{i} again"} for i in range(40)]
    write(tmp_path / "pairs.jsonl", rows)
    write(tmp_path / "texts.jsonl", [{"text": f"t{i}"} for i in range(60)])
    task = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", texts="texts.jsonl"))
    b, c = task.score(hashed_embed(16)).arrays, task.score(hashed_embed(32, shift=1.0)).arrays
    assert all(v.shape == (100,) for v in b.values())  # one number per example: no embeddings to mix
    rng = np.random.default_rng(2)
    for _ in range(20):
        idx = rng.integers(0, 100, size=100)
        for m in task.metrics:
            value = m.compute({k: v[idx] for k, v in b.items()})
            assert isinstance(value, float) and np.isfinite(value), m.name
    idx = rng.integers(0, 100, size=(5, 100))
    for m in task.metrics:
        if m.batch is not None:
            expected = [m.compute({k: v[i] for k, v in c.items()}) for i in idx]
            np.testing.assert_allclose(m.batch({k: v[idx] for k, v in c.items()}), expected, rtol=1e-12)
    for m in task.metrics:
        out = compare_metric(m, f"geo/{m.name}", b, c, seed=0, resamples=200)
        if m.name == "collapsed":  # 0 for both models: no change, nothing to test
            continue
        assert out["ci"] is not None and out["p_value"] is not None, (m.name, out)
        # a mean reads its kind's examples only; uniformity resamples all of them and reads its texts
        assert out["n_paired"] == {"alignment": 40, "mean_cosine": 60, "uniformity": 100}[m.name]
    assert compare_metric(metric(task, "mean_cosine"), "geo/mean_cosine", b, c, resamples=200)["p_value"] < 0.05


def test_an_embedding_task_that_is_not_shardable():
    assert GeometryTask.shardable is False
    assert not hasattr(GeometryTask, "kind")  # the runner takes a task with a ``kind`` for a generative one


def test_texts_are_deduplicated_and_capped(tmp_path):
    write(tmp_path / "pairs.jsonl", [{"text_a": "x", "text_b": "y", "label": "similar"}])
    write(tmp_path / "texts.jsonl", [{"text": f"t{i % 40}"} for i in range(50)])
    task = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", texts="texts.jsonl"))
    assert len(task.sample) == 40 and task.data.n == 41
    assert task.data.notes == ["10 duplicate texts of texts.jsonl were dropped from the sample"]
    capped = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", texts="texts.jsonl", max_texts=10))
    again = GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", texts="texts.jsonl", max_texts=10))
    assert len(capped.sample) == 10 and capped.sample == again.sample  # seeded
    assert capped.sample == sorted(capped.sample, key=lambda t: int(t[1:]))  # in file order
    assert "a seeded sample of 10 of the 40 distinct texts of texts.jsonl" in capped.data.notes[1]
    assert texts_count(capped) == 2 + 10


def texts_count(task) -> int:
    return len(task.texts())


@pytest.mark.parametrize("rows, fields, match, line", [
    ([{"text_a": "a", "text_b": "b"}, {"text_a": "a", "text_b": "c", "label": "dissimilar"}], {},
     "'dissimilar' in a file of positive pairs", "2"),
    ([{"text_a": "a", "text_b": "b"}, {"text_a": "a"}], {}, "missing 'text_b'", "2"),
    ([{"text_a": "a", "text_b": "b"}], {}, "2 distinct texts in the pairs of pairs.jsonl; uniformity needs at least 3",
     None),
])
def test_bad_pairs_files(tmp_path, rows, fields, match, line):
    path = write(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(BadInput, match=match) as err:
        GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", **fields))
    assert err.value.where == str(path) and err.value.location == line


@pytest.mark.parametrize("field, value", [("t", 0), ("alpha", -1), ("t", True), ("collapse_cosine", 1.5),
                                          ("max_texts", 2), ("max_texts", 2.5)])
def test_bad_parameters(tmp_path, field, value):
    write(tmp_path / "pairs.jsonl", [{"text_a": "a", "text_b": "b"}, {"text_a": "c", "text_b": "d"}])
    with pytest.raises(BadInput) as err:
        GeometryTask.load(spec(tmp_path, pairs="pairs.jsonl", **{field: value}))
    assert err.value.location == f"/tasks/0/{field}" and "expected" in err.value.detail


def test_probe_files_load():
    task = GeometryTask.load(spec(PROBES, pairs="data/stsb-positive-pairs.jsonl", texts="data/stsb-texts.jsonl"))
    assert task.data.n > 100 and not task.data.notes
