"""Correlation metrics for STS: scipy's implementations, NaN on degenerate input."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def _correlation(fn, x: np.ndarray, y: np.ndarray) -> float:
    """``fn(x, y).statistic``, or NaN when undefined (fewer than 2 points or a constant input)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(x, y).statistic)


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
    return pearson_rows(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (scipy); NaN when undefined."""
    return _correlation(stats.spearmanr, x, y)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r (scipy); NaN when undefined."""
    return _correlation(stats.pearsonr, x, y)
