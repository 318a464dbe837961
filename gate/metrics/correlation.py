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


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (scipy); NaN when undefined."""
    return _correlation(stats.spearmanr, x, y)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r (scipy); NaN when undefined."""
    return _correlation(stats.pearsonr, x, y)
