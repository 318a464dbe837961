"""Ranking metrics and top-k search against pytrec_eval and brute force (pure, no model)."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval

from gate.metrics.ranking import gains_matrix, ideal_gains, per_query_metrics
from gate.search import top_k

KS = [1, 3, 5, 10]


def _gate_metrics(ranked, q_idx, d_idx, rel, n_docs, ks=KS):
    n_q = ranked.shape[0]
    gains = gains_matrix(ranked, q_idx, d_idx, rel, n_docs)
    ideal = ideal_gains(q_idx, rel, n_q, max(ks))
    n_rel = np.bincount(q_idx[rel > 0], minlength=n_q)
    return per_query_metrics(gains, ideal, n_rel, ks)


def _pytrec(ranked, q_idx, d_idx, rel, ks=KS):
    qrels: dict[str, dict[str, int]] = {}
    for q, d, r in zip(q_idx, d_idx, rel):
        qrels.setdefault(f"q{q}", {})[f"d{d}"] = int(r)
    # Scores that reproduce gate's order exactly: rank 1 gets the highest score.
    run = {f"q{q}": {f"d{d}": float(ranked.shape[1] - i) for i, d in enumerate(row)} for q, row in enumerate(ranked)}
    measures = set()
    for k in ks:
        measures |= {f"recall_{k}", f"P_{k}", f"ndcg_cut_{k}", f"map_cut_{k}"}
    out = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    # mrr@k: pytrec_eval's recip_rank on the run cut at k
    for k in ks:
        cut = {q: dict(list(docs.items())[:k]) for q, docs in run.items()}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        for q in out:
            out[q][f"mrr_{k}"] = rr.get(q, {}).get("recip_rank", 0.0)
    return out


def _random_case(seed: int, n_q=60, n_docs=200, depth=10, graded=True):
    rng = np.random.default_rng(seed)
    q_idx, d_idx, rel = [], [], []
    for q in range(n_q):
        docs = rng.choice(n_docs, size=rng.integers(1, 15), replace=False)
        for d in docs:
            q_idx.append(q)
            d_idx.append(d)
            rel.append(int(rng.integers(-1, 4)) if graded else 1)
    # every query gets at least one relevant judgement so pytrec_eval and gate see the same queries
    for q in range(n_q):
        q_idx.append(q)
        d_idx.append(n_docs + q)
        rel.append(int(rng.integers(1, 4)) if graded else 1)
    n_docs_total = n_docs + n_q
    ranked = np.stack([rng.permutation(n_docs_total)[:depth] for _ in range(n_q)])
    # make relevant docs frequent near the top so every metric is exercised
    for q in range(n_q):
        if rng.random() < 0.7 and n_docs + q not in ranked[q]:  # a ranking never repeats a document
            ranked[q, rng.integers(0, depth)] = n_docs + q
    return ranked, np.array(q_idx), np.array(d_idx), np.array(rel), n_docs_total


@pytest.mark.parametrize("graded", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_query_metrics_match_pytrec_eval(seed, graded):
    ranked, q_idx, d_idx, rel, n_docs = _random_case(seed, graded=graded)
    ours = _gate_metrics(ranked, q_idx, d_idx, rel, n_docs)
    ref = _pytrec(ranked, q_idx, d_idx, rel)
    names = {"recall": "recall_{k}", "precision": "P_{k}", "ndcg": "ndcg_cut_{k}", "map": "map_cut_{k}", "mrr": "mrr_{k}"}
    for q in range(ranked.shape[0]):
        for metric, ref_name in names.items():
            for k in KS:
                assert ours[f"{metric}@{k}"][q] == pytest.approx(ref[f"q{q}"][ref_name.format(k=k)], abs=1e-9), (metric, k, q)


def test_hand_computed_example():
    # One query; ranked docs [5, 2, 7]; judgements: doc 2 rel 2, doc 7 rel 1, doc 9 rel 3 (never retrieved).
    ranked = np.array([[5, 2, 7]])
    q, d, r = np.array([0, 0, 0]), np.array([2, 7, 9]), np.array([2, 1, 3])
    m = _gate_metrics(ranked, q, d, r, 10, ks=[1, 3])
    assert m["recall@1"][0] == 0.0 and m["recall@3"][0] == pytest.approx(2 / 3)
    assert m["precision@3"][0] == pytest.approx(2 / 3)
    assert m["mrr@1"][0] == 0.0 and m["mrr@3"][0] == pytest.approx(1 / 2)
    dcg = 2 / np.log2(3) + 1 / np.log2(4)
    idcg = 3 / np.log2(2) + 2 / np.log2(3) + 1 / np.log2(4)
    assert m["ndcg@3"][0] == pytest.approx(dcg / idcg)
    assert m["map@3"][0] == pytest.approx((1 / 2 + 2 / 3) / 3)


def test_negative_and_zero_relevance_are_not_relevant():
    ranked = np.array([[0, 1, 2]])
    q, d, r = np.array([0, 0, 0]), np.array([0, 1, 2]), np.array([-1, 0, 1])
    m = _gate_metrics(ranked, q, d, r, 3, ks=[1, 3])
    assert m["precision@1"][0] == 0.0
    assert m["mrr@3"][0] == pytest.approx(1 / 3)
    assert m["ndcg@3"][0] == pytest.approx((1 / np.log2(4)) / 1.0)


@pytest.mark.parametrize("q_chunk,c_chunk", [(3, 7), (256, 65536), (1, 1000)])
def test_top_k_matches_full_sort(q_chunk, c_chunk):
    rng = np.random.default_rng(7)
    queries = rng.normal(size=(23, 16)).astype(np.float32)
    corpus = rng.normal(size=(101, 16)).astype(np.float32)
    idx, scores = top_k(queries, corpus, 10, query_chunk=q_chunk, corpus_chunk=c_chunk)
    full = queries @ corpus.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, 1), rtol=1e-6)


def test_top_k_breaks_ties_by_lower_index_across_chunks():
    corpus = np.array([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 4, dtype=np.float32)  # docs 0..5 tie
    queries = np.array([[1.0, 0.0]], dtype=np.float32)
    idx, _ = top_k(queries, corpus, 4, corpus_chunk=3)
    assert idx.tolist() == [[0, 1, 2, 3]]


def test_top_k_with_k_larger_than_corpus():
    corpus = np.eye(3, dtype=np.float32)
    idx, scores = top_k(np.array([[0.0, 1.0, 0.5]], dtype=np.float32), corpus, 10)
    assert idx.tolist() == [[1, 2, 0]]
    assert scores.shape == (1, 3)


def test_top_k_ties_at_the_boundary_go_to_the_lowest_indices():
    # 300 documents: every third scores 0.5, the rest tie at 1.0; argpartition alone picks any of the ties
    scores = np.where(np.arange(300) % 3 == 0, 0.5, 1.0).astype(np.float32)
    corpus = np.stack([scores, np.zeros(300, np.float32)], axis=1)
    idx, _ = top_k(np.array([[1.0, 0.0]], dtype=np.float32), corpus, 5)
    assert idx.tolist() == [[1, 2, 4, 5, 7]]
    idx, _ = top_k(np.array([[1.0, 0.0]], dtype=np.float32), corpus, 5, corpus_chunk=7)
    assert idx.tolist() == [[1, 2, 4, 5, 7]]
