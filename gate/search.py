"""Exact top-k by chunked matrix products.

Never materializes the full queries x corpus score matrix: memory is bounded by
``query_chunk * corpus_chunk`` scores plus the running top-k, so a million-document
corpus needs little beyond its own embedding matrix. Ties are broken by the lower
corpus index so a ranking is reproducible.
"""

from __future__ import annotations

import numpy as np


def _topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k highest scores; among scores tied with the k-th, the lowest indices."""
    if k >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    chosen = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    picked = np.take_along_axis(scores, chosen, 1)
    kth = picked.min(axis=1)
    # argpartition picks arbitrarily among ties at the boundary; repair the (rare) rows where that matters
    ambiguous = np.flatnonzero((scores == kth[:, None]).sum(1) > (picked == kth[:, None]).sum(1))
    for r in ambiguous:
        above = chosen[r][picked[r] > kth[r]]
        tied = np.flatnonzero(scores[r] == kth[r])[: k - len(above)]
        chosen[r] = np.concatenate([above, tied])
    return chosen


def _order(idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by score descending, then index ascending."""
    by_index = np.argsort(idx, axis=1, kind="stable")
    idx = np.take_along_axis(idx, by_index, 1)
    scores = np.take_along_axis(scores, by_index, 1)
    by_score = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(idx, by_score, 1), np.take_along_axis(scores, by_score, 1)


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, *, query_chunk: int = 256,
          corpus_chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` highest dot products per query, best first.

    Returns ``(n_queries, min(k, n_docs))`` arrays. Inputs should be L2-normalized
    for cosine similarity.
    """
    n_q, n_d = queries.shape[0], corpus.shape[0]
    k = min(k, n_d)
    out_idx = np.empty((n_q, k), dtype=np.int64)
    out_scores = np.empty((n_q, k), dtype=np.float32)
    for qs in range(0, n_q, query_chunk):
        q = queries[qs:qs + query_chunk]
        best_idx = np.empty((q.shape[0], 0), dtype=np.int64)
        best_scores = np.empty((q.shape[0], 0), dtype=np.float32)
        for cs in range(0, n_d, corpus_chunk):
            scores = q @ corpus[cs:cs + corpus_chunk].T
            local = _topk_rows(scores, k)
            cand_idx = np.concatenate([best_idx, local + cs], axis=1)
            cand_scores = np.concatenate([best_scores, np.take_along_axis(scores, local, 1)], axis=1)
            cand_idx, cand_scores = _order(cand_idx, cand_scores)
            best_idx, best_scores = cand_idx[:, :k], cand_scores[:, :k]
        out_idx[qs:qs + len(q)] = best_idx
        out_scores[qs:qs + len(q)] = best_scores
    return out_idx, out_scores
