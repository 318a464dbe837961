"""Correlation metrics for STS: scipy's implementations, NaN on degenerate input."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def _guard(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho; NaN when undefined (fewer than 2 points or a constant input)."""
    if not _guard(x, y):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(x, y).statistic)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; NaN when undefined."""
    if not _guard(x, y):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.pearsonr(x, y).statistic)
