"""Exact top-k (gate.search) against a brute-force full sort: every code path, ties, chunk shapes, edge sizes.

test_ranking.py covers the basics; here the block paths are forced one by one: the partial sort of a
block, the threshold pass that keeps only scores above the running k-th, and the fallback to the partial
sort when too many scores pass (e.g. a corpus whose scores rise with the index).
"""

from __future__ import annotations

import numpy as np
import pytest

import gate.search as search
from gate.search import top_k


def brute(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full score matrix, sorted by score descending then index ascending."""
    full = queries @ corpus.T
    idx = np.argsort(-full, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(full, idx, 1)


def check(queries, corpus, k, **chunks):
    idx, scores = top_k(queries, corpus, k, **chunks)
    want_idx, want_scores = brute(queries, corpus, min(k, corpus.shape[0]))
    np.testing.assert_array_equal(idx, want_idx)
    # BLAS sums a dot product in a different order for other block shapes: equal up to rounding
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6, atol=1e-6)
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    return idx


def normalized(rng, n, dim):
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("q_chunk,c_chunk", [(1, 1), (5, 17), (64, 50), (256, 65536), (1000, 300)])
@pytest.mark.parametrize("k", [1, 3, 10, 64])
def test_equals_brute_force_on_random_vectors(q_chunk, c_chunk, k):
    rng = np.random.default_rng(k * 1000 + c_chunk)
    queries, corpus = normalized(rng, 37, 24), normalized(rng, 1003, 24)
    check(queries, corpus, k, query_chunk=q_chunk, corpus_chunk=c_chunk)


@pytest.mark.parametrize("c_chunk", [1, 2, 3, 7, 64, 1000])
def test_heavy_ties_go_to_the_lowest_indices(c_chunk):
    # scores take 4 values only, so every boundary is a tie spanning many blocks
    rng = np.random.default_rng(3)
    corpus = rng.integers(0, 4, size=(500, 1)).astype(np.float32)
    queries = np.array([[1.0], [-1.0], [0.0]], dtype=np.float32)  # the last query ties everything at 0
    for k in (1, 5, 40, 499, 500):
        idx = check(queries, corpus, k, corpus_chunk=c_chunk)
        assert idx[2].tolist() == list(range(k))


def test_equal_scores_in_a_later_block_do_not_displace_earlier_documents():
    corpus = np.ones((12, 2), dtype=np.float32)
    corpus[8:, 0] = 2.0  # a strictly better tail block
    queries = np.array([[1.0, 0.0]], dtype=np.float32)
    idx, scores = top_k(queries, corpus, 6, corpus_chunk=4)
    assert idx.tolist() == [[8, 9, 10, 11, 0, 1]]
    assert scores.tolist() == [[2.0, 2.0, 2.0, 2.0, 1.0, 1.0]]


def test_rising_scores_take_the_dense_fallback_and_stay_exact(monkeypatch):
    # every block beats the whole running top-k: the threshold pass would keep everything
    corpus = np.linspace(0, 1, 4000, dtype=np.float32)[:, None]
    queries = np.ones((3, 1), dtype=np.float32)
    calls = []
    merge_block = search._merge_block
    monkeypatch.setattr(search, "_merge_block", lambda *a: calls.append(1) or merge_block(*a))
    idx = check(queries, corpus, 5, corpus_chunk=100)
    assert idx[0].tolist() == [3999, 3998, 3997, 3996, 3995]
    assert len(calls) == 40  # every block partially sorted


def test_sparse_survivors_take_the_threshold_path(monkeypatch):
    rng = np.random.default_rng(11)
    queries, corpus = normalized(rng, 8, 32), normalized(rng, 20000, 32)
    calls = []
    merge_block = search._merge_block
    monkeypatch.setattr(search, "_merge_block", lambda *a: calls.append(1) or merge_block(*a))
    check(queries, corpus, 10, corpus_chunk=1000)
    assert len(calls) < 20  # the first block, then (almost) only threshold passes


def test_partial_sort_split_into_row_slices_is_exact(monkeypatch):
    monkeypatch.setattr(search, "_PARTITION_ELEMENTS", 100)  # one row (or less) per slice
    rng = np.random.default_rng(5)
    queries, corpus = normalized(rng, 20, 8), normalized(rng, 333, 8)
    check(queries, corpus, 7, corpus_chunk=333)
    queries, corpus = np.round(queries * 2), np.round(corpus * 2)  # small integers: many exact ties
    check(queries, corpus, 7, corpus_chunk=50)
    check(queries, corpus, 7, corpus_chunk=333)


def test_edge_sizes():
    rng = np.random.default_rng(0)
    corpus = normalized(rng, 5, 4)
    idx, scores = top_k(np.zeros((0, 4), np.float32), corpus, 3)
    assert idx.shape == (0, 3) and scores.shape == (0, 3)
    idx, scores = top_k(normalized(rng, 2, 4), np.zeros((0, 4), np.float32), 3)
    assert idx.shape == (2, 0) and scores.shape == (2, 0)
    idx, _ = top_k(normalized(rng, 2, 4), corpus, 0)
    assert idx.shape == (2, 0)
    check(normalized(rng, 2, 4), corpus, 5)
    check(normalized(rng, 2, 4), corpus, 99, corpus_chunk=2)


def test_float64_inputs_and_non_contiguous_views():
    rng = np.random.default_rng(9)
    queries = rng.standard_normal((30, 12))
    corpus = rng.standard_normal((400, 24))[:, ::2]  # a strided view
    idx, scores = top_k(queries, corpus, 8, query_chunk=7, corpus_chunk=33)
    want, want_scores = brute(queries, corpus, 8)
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def test_same_result_whatever_the_chunking():
    # small integers: every dot product is exact in float32, so ties are exact whatever the block shape
    rng = np.random.default_rng(21)
    queries = rng.integers(-3, 4, size=(50, 16)).astype(np.float32)
    corpus = rng.integers(-2, 3, size=(2000, 16)).astype(np.float32)
    ref = top_k(queries, corpus, 10, query_chunk=50, corpus_chunk=2000)
    for q_chunk, c_chunk in [(1, 1), (7, 13), (50, 128), (3, 1999)]:
        got = top_k(queries, corpus, 10, query_chunk=q_chunk, corpus_chunk=c_chunk)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("c_chunk", [1, 7, 64, 5000])
def test_gathered_rows_rank_as_the_copied_corpus(c_chunk):
    """``rows`` (a corpus with repeated or scattered rows of a bigger matrix) ranks as ``matrix[rows]`` does."""
    rng = np.random.default_rng(c_chunk)
    matrix, queries = normalized(rng, 300, 16), normalized(rng, 23, 16)
    rows = np.concatenate([rng.permutation(300)[:250], [5, 5, 17]])  # scattered, with repeats (ties)
    idx, scores = top_k(queries, matrix, 10, rows=rows, corpus_chunk=c_chunk)
    want_idx = check(queries, matrix[rows], 10, corpus_chunk=c_chunk)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ matrix[rows].T, want_idx, 1), rtol=1e-6,
                               atol=1e-6)
