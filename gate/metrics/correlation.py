"""Correlation metrics for STS, NaN on degenerate input; ranks without sorting every resample.

Spearman's rho is Pearson's r of average ranks (ties share the mean of their positions, as
``scipy.stats.rankdata`` gives them). The bootstrap and the permutation test need the ranks of
thousands of resampled rows: sorting each row (``rankdata(..., axis=-1)``) made that the slowest
part of a run (about 1.8 s per metric on 1,379 pairs). A resampled row only holds values of the
original arrays, so :mod:`gate.stats` hands the batch integer codes of those values (their order
among every value the two models have, found once); :func:`ranks_from_codes` then counts
them per row and reads each average rank off the cumulative counts, with no sort at all. The
ranks are the same numbers (halves are exact in floating point), so the statistics are too.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np


def rank_average(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of a 1-D array, as ``scipy.stats.rankdata(values)``; all NaN if one is NaN."""
    return rank_rows(np.asarray(values, dtype=np.float64)[None, :])[0]


def rank_rows(x: np.ndarray) -> np.ndarray:
    """Average ranks of each row of ``x`` (shape ``(R, n)``), as ``scipy.stats.rankdata(x, axis=-1)``: a row
    holding a NaN is all NaN."""
    x = np.asarray(x, dtype=np.float64)
    rows, n = x.shape
    out = np.full((rows, n), np.nan)
    finite = ~np.isnan(x).any(axis=1)
    if not n or not finite.any():
        return out
    xs = x[finite]
    order = np.argsort(xs, axis=1, kind="stable")
    ordered = np.take_along_axis(xs, order, axis=1)
    first = np.ones(ordered.shape, dtype=bool)  # where a run of equal values starts (in sorted order)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    last = np.ones(ordered.shape, dtype=bool)
    last[:, :-1] = first[:, 1:]
    pos = np.broadcast_to(np.arange(n), ordered.shape)
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(ordered.shape)
    np.put_along_axis(ranks, order, (start + end) * 0.5 + 1.0, axis=1)
    out[finite] = ranks
    return out


def ranks_from_codes(codes: np.ndarray, levels: int) -> np.ndarray:
    """Average ranks of each row of values given as integer codes ``0 <= code < levels`` in increasing order of
    value (equal values, equal codes): a count per code and row, and the rank of a code is the number of
    smaller values plus the mean position among its equals. ``O(R * (n + levels))``, no sort."""
    codes = np.asarray(codes, dtype=np.int64)
    rows = codes.shape[0]
    flat = (codes + (np.arange(rows, dtype=np.int64) * levels)[:, None]).ravel()
    counts = np.bincount(flat, minlength=rows * levels).reshape(rows, levels)
    below = np.cumsum(counts, axis=1) - counts
    return (below + (counts + 1) * 0.5).ravel()[flat].reshape(codes.shape)


def row_ranks(arrays: Any, key: str) -> np.ndarray:
    """The average ranks of each row of ``arrays[key]``: from the value codes when the arrays come from the
    resampling of :mod:`gate.stats` (they have ``ranks``), else by sorting each row."""
    ranks = getattr(arrays, "ranks", None)
    return ranks(key) if ranks is not None else rank_rows(arrays[key])


def spearman_batch(x_key: str, y_key: str) -> Callable[[Any], np.ndarray]:
    """A metric's ``batch``: Spearman's rho of ``x_key`` against ``y_key`` on every resampled row."""
    return lambda arrays: pearson_rows(row_ranks(arrays, x_key), row_ranks(arrays, y_key))


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of ``x`` with the same row of ``y`` (shape ``(R, n)``); NaN where undefined.

    The batched form of :func:`pearson` for resampling: same formula, so the same values to rounding.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out = np.full(x.shape[0], np.nan)
    if x.shape[-1] < 2:
        return out
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt(np.einsum("ij,ij->i", xc, xc) * np.einsum("ij,ij->i", yc, yc))
    ok = (np.ptp(x, axis=-1) > 0) & (np.ptp(y, axis=-1) > 0) & (den > 0)
    out[ok] = np.clip(np.einsum("ij,ij->i", xc[ok], yc[ok]) / den[ok], -1.0, 1.0)
    return out


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho per row (average ranks, then Pearson), the batched form of :func:`spearman`."""
    return pearson_rows(rank_rows(x), rank_rows(y))


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho; NaN when undefined (fewer than 2 points, a constant input, a NaN).

    Computed as ``scipy.stats.spearmanr`` computes it (average ranks of both, then ``numpy.corrcoef`` of the
    two columns), without importing scipy.stats: the same number to the last digit."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if _degenerate(x, y) or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    ranked = np.column_stack((rank_average(x), rank_average(y)))
    if np.ptp(ranked[:, 0]) == 0 or np.ptp(ranked[:, 1]) == 0:  # e.g. every value +inf
        return float("nan")
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r (scipy); NaN when undefined."""
    x, y = np.asarray(x), np.asarray(y)
    if _degenerate(x, y):
        return float("nan")
    from scipy import stats  # imported when needed: a run without Pearson never pays for scipy.stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.pearsonr(x, y).statistic)
