"""Ranking metrics per query, with trec_eval's definitions (checked against pytrec_eval).

Given each query's ranked document indices and its graded judgements:

- ``recall@k``    relevant in the top k / all relevant;
- ``precision@k`` relevant in the top k / k (trec_eval ``P_k``: divides by k even if fewer were ranked);
- ``mrr@k``       1 / rank of the first relevant document within k, else 0;
- ``ndcg@k``      DCG with linear gain ``relevance`` and discount ``log2(rank + 1)``, over the ideal DCG
                  of all judged relevances (trec_eval ``ndcg_cut_k``);
- ``map@k``       sum of precision at each relevant rank within k / all relevant (trec_eval ``map_cut_k``).

A document is relevant when its relevance is > 0; unjudged documents count as 0.
Everything is vectorized over queries: one ``searchsorted`` finds the gains.
"""

from __future__ import annotations

import numpy as np

RANKING_METRICS = ("recall", "precision", "mrr", "ndcg", "map")


def gains_matrix(ranked: np.ndarray, q_idx: np.ndarray, d_idx: np.ndarray, rel: np.ndarray, n_docs: int) -> np.ndarray:
    """Relevance of each ranked document: ``(n_queries, depth)``, 0 where unjudged.

    ``q_idx, d_idx, rel`` are the judgements as parallel arrays (query row, doc column, grade).
    """
    keys = q_idx.astype(np.int64) * n_docs + d_idx.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys, grades = keys[order], rel[order].astype(np.float64)
    wanted = np.arange(ranked.shape[0], dtype=np.int64)[:, None] * n_docs + ranked.astype(np.int64)
    pos = np.searchsorted(keys, wanted)
    pos_clipped = np.minimum(pos, len(keys) - 1)
    hit = (pos < len(keys)) & (keys[pos_clipped] == wanted) & (ranked >= 0)
    return np.where(hit, grades[pos_clipped], 0.0)


def ideal_gains(q_idx: np.ndarray, rel: np.ndarray, n_queries: int, depth: int) -> np.ndarray:
    """Each query's positive grades sorted descending, padded with zeros: ``(n_queries, depth)``."""
    out = np.zeros((n_queries, depth))
    positive = rel > 0
    qs, grades = q_idx[positive], rel[positive].astype(np.float64)
    order = np.lexsort((-grades, qs))
    qs, grades = qs[order], grades[order]
    starts = np.searchsorted(qs, np.arange(n_queries))
    rank = np.arange(len(qs)) - starts[qs]
    keep = rank < depth
    out[qs[keep], rank[keep]] = grades[keep]
    return out


def per_query_metrics(gains: np.ndarray, ideal: np.ndarray, n_relevant: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """Every ranking metric at every k, per query. ``gains`` must be at least ``max(ks)`` wide (pad with 0)."""
    depth = max(ks)
    if gains.shape[1] < depth:
        gains = np.pad(gains, ((0, 0), (0, depth - gains.shape[1])))
    if ideal.shape[1] < depth:
        ideal = np.pad(ideal, ((0, 0), (0, depth - ideal.shape[1])))
    relevant = gains[:, :depth] > 0
    discount = 1.0 / np.log2(np.arange(2, depth + 2))
    positive_gain = np.maximum(gains[:, :depth], 0.0)
    dcg = np.cumsum(positive_gain * discount, axis=1)
    idcg = np.cumsum(ideal[:, :depth] * discount, axis=1)
    hits = np.cumsum(relevant, axis=1)
    ranks = np.arange(1, depth + 1)
    precision_at_rank = hits / ranks
    ap_terms = np.cumsum(np.where(relevant, precision_at_rank, 0.0), axis=1)
    first = np.where(relevant.any(axis=1), relevant.argmax(axis=1), depth)
    nrel = n_relevant.astype(np.float64)
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in sorted(ks):
            out[f"recall@{k}"] = np.where(nrel > 0, hits[:, k - 1] / nrel, 0.0)
            out[f"precision@{k}"] = hits[:, k - 1] / k
            out[f"mrr@{k}"] = np.where(first < k, 1.0 / (first + 1), 0.0)
            out[f"ndcg@{k}"] = np.where(idcg[:, k - 1] > 0, dcg[:, k - 1] / idcg[:, k - 1], 0.0)
            out[f"map@{k}"] = np.where(nrel > 0, ap_terms[:, k - 1] / nrel, 0.0)
    return out
