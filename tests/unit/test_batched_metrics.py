"""The fast paths of the statistics give the very numbers of the slow ones.

Ranks read off value codes equal ``scipy.stats.rankdata``; Spearman without scipy equals ``spearmanr``; a
paired bootstrap and swap test of Spearman through the codes equal those that sort every row; BLEU over
resampled rows equals sacrebleu on each row. Equal means equal, not close: a warm run that got faster
must report the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from gate.metrics.correlation import (rank_average, rank_rows, ranks_from_codes, spearman, spearman_batch,
                                      spearman_rows)
from gate.scorers import corpus_bleu, corpus_bleu_rows
from gate.stats import paired_delta


def _tied(rng: np.random.Generator, n: int, decimals: int) -> np.ndarray:
    return np.round(rng.normal(size=n), decimals)


@pytest.mark.parametrize("decimals", [0, 1, 3, 8])
def test_ranks_equal_scipys_average_ranks(decimals):
    rng = np.random.default_rng(decimals)
    v = _tied(rng, 300, decimals)
    idx = rng.integers(0, len(v), size=(40, len(v)))
    expected = sps.rankdata(v[idx], axis=-1)
    assert np.array_equal(rank_rows(v[idx]), expected)
    levels, inverse = np.unique(v, return_inverse=True)
    assert np.array_equal(ranks_from_codes(inverse[idx], len(levels)), expected)
    assert np.array_equal(rank_average(v), sps.rankdata(v))


def test_a_row_with_nan_ranks_nan_and_infinities_rank_like_numbers():
    rows = np.array([[1.0, np.nan, 2.0], [np.inf, 1.0, np.inf]])
    assert np.array_equal(rank_rows(rows), sps.rankdata(rows, axis=-1), equal_nan=True)


def test_spearman_without_scipy_is_scipys_to_the_last_digit():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(3, 500))
        x = _tied(rng, n, int(trial % 4))
        y = np.round(x * rng.random() + rng.normal(size=n), int(trial % 3))
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        assert spearman(x, y) == sps.spearmanr(x, y).statistic
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))
    assert np.isnan(spearman(np.array([1.0, np.nan, 3.0]), np.arange(3.0)))


def _sts_arrays(n: int = 400) -> tuple[dict, dict]:
    rng = np.random.default_rng(11)
    gold = np.round(rng.uniform(0, 5, n), 1)  # many ties, as human scores have
    b = np.round(gold / 5 + rng.normal(0, 0.2, n), 3)
    c = np.round(gold / 5 + rng.normal(0, 0.15, n), 3)
    return {"cosine": b, "gold": gold}, {"cosine": c, "gold": gold.copy()}


def test_spearman_statistics_through_codes_equal_those_that_sort_every_row():
    baseline, candidate = _sts_arrays()
    metric = lambda a: spearman(a["cosine"], a["gold"])  # noqa: E731
    fast = paired_delta(metric, baseline, candidate, resamples=700, seed=3, batch=spearman_batch("cosine", "gold"))
    sorting = paired_delta(metric, baseline, candidate, resamples=700, seed=3,
                           batch=lambda a: spearman_rows(a["cosine"], a["gold"]))
    assert fast == sorting
    loop = paired_delta(metric, baseline, candidate, resamples=700, seed=3)  # scipy on every row
    assert fast.ci == pytest.approx(loop.ci, abs=1e-12) and fast.p_value == loop.p_value


def test_bleu_over_resampled_rows_is_sacrebleu_on_each_row():
    rng = np.random.default_rng(5)
    n, samples = 60, 2
    matches = rng.integers(0, 6, size=(n, samples, 4)).astype(float)
    totals = matches + rng.integers(0, 4, size=(n, samples, 4))
    lengths = rng.integers(3, 12, size=(n, samples, 2)).astype(float)
    stats = np.concatenate([matches, totals, lengths], axis=2)
    stats[rng.random(n) < 0.2] = np.nan  # cases without 'expected'
    other = stats.copy()
    other[:, :, 0] = np.maximum(other[:, :, 0] - 1, 0)
    rows = stats[rng.integers(0, n, size=(30, n))]
    assert np.array_equal(corpus_bleu_rows({"bleu_stats": rows}), [corpus_bleu({"bleu_stats": r}) for r in rows])
    empty = np.full((2, 3, samples, 10), np.nan)
    assert np.isnan(corpus_bleu_rows({"bleu_stats": empty})).all()
    batched = paired_delta(corpus_bleu, {"bleu_stats": stats}, {"bleu_stats": other}, resamples=300, seed=1,
                           batch=corpus_bleu_rows)
    looped = paired_delta(corpus_bleu, {"bleu_stats": stats}, {"bleu_stats": other}, resamples=300, seed=1)
    assert batched == looped
