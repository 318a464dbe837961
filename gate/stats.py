"""Paired statistics for a metric delta (candidate − baseline): a bootstrap CI and a p-value.

Why *paired*: the baseline and the candidate are scored on the same examples, and most of the
spread of a metric comes from which examples happen to be in the set (some pairs are easy for
every model). Resampling or permuting *examples* — with both roles kept together — cancels that
shared variance, so the interval and the test are far tighter than comparing two independent
intervals, and still honest.

- **CI**: a paired percentile bootstrap. One index vector ``i`` (examples drawn with replacement)
  is applied to both roles, the metric is recomputed on ``baseline[i]`` and ``candidate[i]``, and
  the interval is the percentiles of the differences. The percentile method needs nothing but the
  metric itself, so it works for any :class:`~gate.metrics.MetricDef` — means, per-query ranking
  metrics, correlations (pairs are resampled and the correlation recomputed) — and it matches
  ``scipy.stats.bootstrap(..., paired=True, method="percentile")``.
- **p-value** (two-sided), a permutation test under "the two models are exchangeable":

  * mean of a per-example vector (:func:`paired_mean_delta`): flip the sign of each example's
    difference (``sign-flip``; exact enumeration of all ``2**n`` flips when ``n <= 16``); for 0/1
    outcomes the exact McNemar test instead (a binomial test on the discordant pairs);
  * any other metric (:func:`paired_delta`): swap the baseline and candidate values of each
    example at random and recompute the delta (``swap``; exact when ``2**n <= resamples``).

  Monte-Carlo permutation p-values use add-one smoothing, ``p = (k + 1) / (R + 1)``: the observed
  labelling is itself one of the permutations, so this is a valid (never anti-conservative)
  p-value and never exactly 0. Exact enumeration needs no smoothing: ``p = k / 2**n``.

A ``batch`` gets each chunk of resampled rows as :class:`Rows`, whose ``ranks(key)`` reads the
rows' average ranks off integer codes of the values (found once per metric), so a rank statistic
(Spearman) sorts nothing per resample. Arrays equal in both roles (gold scores) are resampled once.

Everything is pure numpy (scipy, imported when first needed, only for the binomial test and normal
quantiles), seeded through
:class:`numpy.random.SeedSequence`, and reproducible to the last digit for a given seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np
from gate.metrics.correlation import rank_rows, ranks_from_codes

Arrays = Mapping[str, np.ndarray]
Metric = Callable[[Arrays], float]
#: the same metric over a leading axis of resamples: arrays shaped ``(R, n, ...)`` -> ``R`` values
Batch = Callable[[Arrays], np.ndarray]

#: a CI (or p-value) is withheld when more than this share of resamples gave an undefined metric
MAX_NAN_SHARE = 0.05
#: exact sign-flip enumeration up to this many examples (2**16 rows)
EXACT_SIGN_FLIP_MAX_N = 16
#: resampled values materialized at once (bounds memory for large n)
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class DeltaStats:
    """A metric delta (candidate − baseline) with its paired uncertainty."""

    delta: float
    #: paired bootstrap percentile CI of the delta; None when unavailable (see ``reason``)
    ci: tuple[float, float] | None
    #: two-sided p-value of "no difference"; None when unavailable (see ``reason``)
    p_value: float | None
    #: "sign-flip", "sign-flip-exact", "mcnemar-exact", "swap", "swap-exact", "bootstrap-only" or "none"
    method: str
    n: int
    #: why ``ci`` or ``p_value`` is None
    reason: str | None = None
    #: standard error of ``delta``: ``sd(d) / sqrt(n)`` for a mean, else the sd of the bootstrap deltas
    se: float | None = None


# ----------------------------------------------------------------------------- helpers


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent streams for the bootstrap and the permutation test, so one does not shift the other."""
    boot, perm = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(boot), np.random.default_rng(perm)


def _chunks(total: int, n: int) -> Iterator[int]:
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < total:
        size = min(rows, total - done)
        yield size
        done += size


def _bootstrap_indices(rng: np.random.Generator, n: int, resamples: int) -> Iterator[np.ndarray]:
    """Index matrices ``(rows, n)`` drawn with replacement, ``resamples`` rows in all."""
    for rows in _chunks(resamples, n):
        yield rng.integers(0, n, size=(rows, n))


def _check_args(resamples: int, confidence: float, min_n: int) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not 1 <= min_n <= EXACT_SIGN_FLIP_MAX_N + 1:
        raise ValueError(f"min_n must be in 1..{EXACT_SIGN_FLIP_MAX_N + 1} (below it the tests are exact), "
                         f"got {min_n}")


def _n_examples(baseline: Arrays, candidate: Arrays) -> int:
    if set(baseline) != set(candidate):
        raise ValueError(f"baseline and candidate arrays differ: {sorted(baseline)} vs {sorted(candidate)}")
    if not baseline:
        raise ValueError("no arrays given")
    lengths = {len(np.asarray(a)) for a in baseline.values()} | {len(np.asarray(a)) for a in candidate.values()}
    if len(lengths) != 1:
        raise ValueError(f"arrays are not aligned on their first axis (lengths {sorted(lengths)})")
    return lengths.pop()


def _percentile_ci(deltas: np.ndarray, confidence: float, resamples: int) -> tuple[tuple[float, float] | None, str | None]:
    """Percentile CI of the bootstrap deltas, dropping NaN resamples unless there are too many."""
    finite = deltas[~np.isnan(deltas)]
    n_nan = len(deltas) - len(finite)
    if n_nan > MAX_NAN_SHARE * resamples or not len(finite):
        return None, (f"{n_nan} of {resamples} bootstrap resamples gave an undefined metric "
                      f"(more than {MAX_NAN_SHARE:.0%}); no CI")
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return (float(lo), float(hi)), None


def _tolerance(observed: float) -> float:
    """Permuted statistics within this of ``|observed|`` count as ties (float summation order differs)."""
    return 1e-10 * abs(observed)


def _join(*reasons: str | None) -> str | None:
    parts = [r for r in reasons if r]
    return "; ".join(parts) if parts else None


# ----------------------------------------------------------------------------- mean of a per-example vector


def _as_per_example(values: np.ndarray) -> np.ndarray:
    """1-D float values; trailing axes (e.g. ``(n_cases, n_samples)``) are averaged per example."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0:
        raise ValueError("expected per-example values, got a scalar")
    return v.reshape(len(v), -1).mean(axis=1) if v.ndim > 1 else v


def _is_binary(v: np.ndarray) -> bool:
    return bool(np.all((v == 0.0) | (v == 1.0)))


def _sign_flip_p(d: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[float, str]:
    """Two-sided sign-flip test of ``mean(d) == 0``: exact for ``n <= 16``, else Monte-Carlo with add-one."""
    n = len(d)
    observed = float(np.mean(d))
    threshold = abs(observed) - _tolerance(observed)
    if n <= EXACT_SIGN_FLIP_MAX_N:
        flips = ((np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n)) & 1).astype(bool)
        null = np.where(flips, -d, d).mean(axis=1)
        return float(np.count_nonzero(np.abs(null) >= threshold) / 2**n), "sign-flip-exact"
    k = 0
    for rows in _chunks(resamples, n):
        flips = rng.random((rows, n)) < 0.5
        null = np.where(flips, -d, d).mean(axis=1)
        k += int(np.count_nonzero(np.abs(null) >= threshold))
    return (k + 1) / (resamples + 1), "sign-flip"


def _mcnemar_p(b: np.ndarray, c: np.ndarray) -> float:
    """Exact McNemar: under H0 each discordant pair is candidate-only or baseline-only with probability 1/2."""
    only_c = int(np.count_nonzero((c == 1) & (b == 0)))
    only_b = int(np.count_nonzero((c == 0) & (b == 1)))
    if only_c + only_b == 0:
        return 1.0
    from scipy import stats as _sps  # imported when needed: most runs have no 0/1 metric to test

    return float(_sps.binomtest(only_c, only_c + only_b, 0.5).pvalue)


def paired_mean_delta(b: np.ndarray, c: np.ndarray, *, resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0, min_n: int = 10, binary: bool | None = None) -> DeltaStats:
    """Delta of ``mean(c) - mean(b)`` for per-example values paired by index, fully vectorized.

    The CI is the paired percentile bootstrap of the mean difference (the same draws that
    :func:`paired_delta` makes for the same seed). The p-value is the exact McNemar test when both
    vectors are 0/1 (``binary=None`` detects it; pass ``False`` to force the sign-flip test), else
    the sign-flip permutation test on ``d = c - b``: under H0 each ``d_i`` is as likely to be
    ``-d_i``. Values with trailing axes are averaged per example first.
    """
    _check_args(resamples, confidence, min_n)
    b, c = _as_per_example(b), _as_per_example(c)
    if b.shape != c.shape:
        raise ValueError(f"baseline and candidate differ in length: {len(b)} vs {len(c)}")
    n = len(b)
    d = c - b
    delta = float(np.mean(d)) if n else float("nan")
    if np.isnan(d).any():
        return DeltaStats(delta, None, None, "none", n, "per-example values contain NaN")
    if binary is None:
        binary = _is_binary(b) and _is_binary(c)
    boot_rng, perm_rng = _rngs(seed)
    if n < min_n:  # too few to bootstrap a CI; the exact tests stay valid at any n
        reason = f"{n} examples; at least {min_n} are needed to bootstrap a CI"
        if n == 0:
            return DeltaStats(delta, None, None, "none", n, reason)
        se = float(np.std(d, ddof=1)) / math.sqrt(n) if n > 1 else None
        if binary:
            return DeltaStats(delta, None, _mcnemar_p(b, c), "mcnemar-exact", n, reason, se)
        p, method = _sign_flip_p(d, perm_rng, resamples)  # exact: n < min_n <= 16
        return DeltaStats(delta, None, p, method, n, reason, se)
    deltas = np.concatenate([d[idx].mean(axis=1) for idx in _bootstrap_indices(boot_rng, n, resamples)])
    ci, reason = _percentile_ci(deltas, confidence, resamples)
    se = float(np.std(d, ddof=1)) / math.sqrt(n)
    if binary:
        return DeltaStats(delta, ci, _mcnemar_p(b, c), "mcnemar-exact", n, reason, se)
    p, method = _sign_flip_p(d, perm_rng, resamples)
    return DeltaStats(delta, ci, p, method, n, reason, se)


# ----------------------------------------------------------------------------- any metric


class Rows(dict):
    """Arrays with a leading axis of resampled rows, as a metric's ``batch`` gets them.

    :meth:`ranks` gives the average ranks of each row of one array (``scipy.stats.rankdata(..., axis=-1)``,
    the same numbers): from integer codes of its values when the resampling knows them, else by sorting."""

    def __init__(self, arrays: dict[str, np.ndarray], ranker: Callable[[str], np.ndarray | None] | None = None):
        super().__init__(arrays)
        self._ranker = ranker

    def ranks(self, key: str) -> np.ndarray:
        found = self._ranker(key) if self._ranker is not None else None
        return rank_rows(self[key]) if found is None else found


class _Codes:
    """Integer codes of each 1-D array's values over both roles, in increasing order of value (equal values share
    a code), found on first use: a resampled row's codes are gathered like its values, and its ranks counted
    from them (:func:`~gate.metrics.correlation.ranks_from_codes`). Arrays shared by the roles are ranked once
    per chunk, and not at all in the swap test (exchanging equal values changes no rank)."""

    def __init__(self, baseline: dict[str, np.ndarray], candidate: dict[str, np.ndarray], shared: set[str]):
        self.baseline, self.candidate, self.shared = baseline, candidate, shared
        self._found: dict[str, tuple[np.ndarray, np.ndarray, int] | None] = {}
        self._full: dict[str, np.ndarray] = {}

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray, int] | None:
        if key not in self._found:
            b, c = self.baseline[key], self.candidate[key]
            usable = b.ndim == 1 and b.dtype.kind in "fiu" and c.dtype.kind in "fiu" and not (
                np.isnan(b).any() or np.isnan(c).any())
            if usable:
                levels, inverse = np.unique(np.concatenate([b, c]), return_inverse=True)
                self._found[key] = (inverse[:len(b)], inverse[len(b):], len(levels))
            else:  # a NaN ranks the whole row NaN, a 2-D array has no single rank: sort those
                self._found[key] = None
        return self._found[key]

    def taken(self, idx: np.ndarray) -> tuple[Callable[[str], np.ndarray | None], ...]:
        """Rankers of the bootstrap rows ``idx`` for the baseline and the candidate."""
        memo: dict[str, np.ndarray] = {}

        def ranker(role: int) -> Callable[[str], np.ndarray | None]:
            def ranks(key: str) -> np.ndarray | None:
                found = self.get(key)
                if found is None:
                    return None
                if key not in self.shared:
                    return ranks_from_codes(found[role][idx], found[2])
                if key not in memo:
                    memo[key] = ranks_from_codes(found[0][idx], found[2])
                return memo[key]
            return ranks
        return ranker(0), ranker(1)

    def swapped(self, masks: np.ndarray) -> tuple[Callable[[str], np.ndarray | None], ...]:
        """Rankers of the swap-test rows ``masks`` (True: the roles' values exchanged) for both roles."""
        def ranker(role: int) -> Callable[[str], np.ndarray | None]:
            def ranks(key: str) -> np.ndarray | None:
                found = self.get(key)
                if found is None:
                    return None
                if key in self.shared:  # the full data's ranks, on every row
                    if key not in self._full:
                        self._full[key] = ranks_from_codes(found[0][None], found[2])[0]
                    return np.broadcast_to(self._full[key], masks.shape)
                own, other = found[role], found[1 - role]
                return ranks_from_codes(np.where(masks, other[None], own[None]), found[2])
            return ranks
        return ranker(0), ranker(1)


def _shared(baseline: Arrays, candidate: Arrays) -> set[str]:
    """Keys whose arrays are the same in both roles (gold scores, labels): resampled once for both."""
    return {k for k in baseline if baseline[k] is candidate[k] or (
        baseline[k].shape == candidate[k].shape and np.array_equal(baseline[k], candidate[k]))}


def _take(arrays: Arrays, idx: np.ndarray, done: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every array at ``idx``; those in ``done`` (shared with the other role) are taken from there."""
    return {k: done[k] if done is not None and k in done else v[idx] for k, v in arrays.items()}


def _swap_masks(n: int, rng: np.random.Generator, resamples: int, exact: bool) -> Iterator[np.ndarray]:
    """Boolean matrices ``(rows, n)``: every one of the ``2**n`` swaps when exact, else ``resamples`` random ones."""
    if exact:
        codes = np.arange(2**n, dtype=np.int64)
        for start in range(0, 2**n, max(1, _CHUNK_CELLS // max(n, 1))):
            chunk = codes[start:start + max(1, _CHUNK_CELLS // max(n, 1))]
            yield ((chunk[:, None] >> np.arange(n)) & 1).astype(bool)
        return
    for rows in _chunks(resamples, n):
        yield rng.random((rows, n)) < 0.5


def _swapped(baseline: Arrays, candidate: Arrays, masks: np.ndarray, shared: set[str] = frozenset()
             ) -> tuple[dict, dict]:
    """Arrays with a leading resample axis: row r has the roles exchanged where ``masks[r]`` is True."""
    b_out, c_out = {}, {}
    for k in baseline:
        b, c = baseline[k], candidate[k]
        m = masks.reshape(masks.shape + (1,) * (b.ndim - 1))
        if k in shared:  # exchanging equal values changes nothing: one array for both roles
            b_out[k] = c_out[k] = np.where(m, c[None], b[None])
        else:
            b_out[k], c_out[k] = np.where(m, c[None], b[None]), np.where(m, b[None], c[None])
    return b_out, c_out


def _metric_rows(metric: Metric, batch: Batch | None, baseline: Arrays, candidate: Arrays) -> np.ndarray:
    """``metric(candidate[r]) - metric(baseline[r])`` for every row r of arrays with a leading resample axis."""
    if batch is not None:
        return np.asarray(batch(candidate), dtype=np.float64) - np.asarray(batch(baseline), dtype=np.float64)
    rows = len(next(iter(baseline.values())))
    return np.fromiter((metric({k: v[r] for k, v in candidate.items()}) - metric({k: v[r] for k, v in baseline.items()})
                        for r in range(rows)), dtype=np.float64, count=rows)


def _swap_p(metric: Metric, baseline: Arrays, candidate: Arrays, delta: float, rng: np.random.Generator,
            resamples: int, force_exact: bool = False, batch: "Batch | None" = None,
            codes: _Codes | None = None, shared: set[str] = frozenset()) -> tuple[float | None, str, str | None]:
    """Two-sided paired swap test: under H0 the model labels of each example are exchangeable.

    Exact (all ``2**n`` swaps) when that is no more work than ``resamples``, or when forced
    (a handful of examples, where a Monte-Carlo p-value would be needlessly rough)."""
    n = len(next(iter(baseline.values())))
    threshold = abs(delta) - _tolerance(delta)
    exact = n < 63 and (2**n <= resamples or force_exact)
    total = 2**n if exact else resamples
    k = n_nan = 0
    codes = codes or _Codes(baseline, candidate, shared)
    for masks in _swap_masks(n, rng, resamples, exact):
        b, c = _swapped(baseline, candidate, masks, shared)
        b_ranks, c_ranks = codes.swapped(masks)
        t = _metric_rows(metric, batch, Rows(b, b_ranks), Rows(c, c_ranks))
        nan = np.isnan(t)
        n_nan += int(nan.sum())
        k += int(np.count_nonzero(np.abs(t[~nan]) >= threshold))
    method = "swap-exact" if exact else "swap"
    if n_nan > MAX_NAN_SHARE * total:
        return None, method, (f"{n_nan} of {total} permutations gave an undefined metric "
                              f"(more than {MAX_NAN_SHARE:.0%}); no p-value")
    valid = total - n_nan
    p = k / valid if exact else (k + 1) / (valid + 1)
    return float(min(p, 1.0)), method, None


def paired_delta(metric: Metric, baseline: Arrays, candidate: Arrays, *, resamples: int = 2000,
                 confidence: float = 0.95, seed: int = 0, min_n: int = 10,
                 permutation: bool = True, batch: Batch | None = None) -> DeltaStats:
    """Delta ``metric(candidate) - metric(baseline)`` for any metric of per-example arrays.

    ``baseline`` and ``candidate`` hold the same keys, every array aligned on its first axis
    (examples), paired by index; arrays that are the same in both roles (e.g. gold scores) are
    simply carried along. The metric is a black box, so this loops over resamples in Python: the
    bootstrap recomputes it ``2 * resamples`` times and the swap test as many again
    (``permutation=False`` skips the test: method ``bootstrap-only``). ``batch``, the same metric
    over a leading resample axis, replaces that loop by array operations on chunks of resamples;
    the draws are the same, so the result is the same to rounding. For a plain mean of one
    vector, :func:`paired_mean_delta` is vectorized and gives the same CI for the same seed.

    Resamples on which the metric is NaN (e.g. a correlation of a constant resample) are dropped;
    if more than 5 % are NaN the CI (or p-value) is None and ``reason`` says why.
    """
    _check_args(resamples, confidence, min_n)
    n = _n_examples(baseline, candidate)
    baseline = {k: np.asarray(v) for k, v in baseline.items()}
    candidate = {k: np.asarray(v) for k, v in candidate.items()}
    delta = float(metric(candidate)) - float(metric(baseline))
    if math.isnan(delta):
        return DeltaStats(delta, None, None, "none", n, "the metric is undefined on the full data")
    boot_rng, perm_rng = _rngs(seed)
    shared = _shared(baseline, candidate)
    codes = _Codes(baseline, candidate, shared)
    if n < min_n:  # too few to bootstrap a CI; the exact swap test (at most 2**(min_n - 1) swaps) stays valid
        reason = f"{n} examples; at least {min_n} are needed to bootstrap a CI"
        if n == 0 or not permutation:
            return DeltaStats(delta, None, None, "none", n, reason)
        p, method, p_reason = _swap_p(metric, baseline, candidate, delta, perm_rng, resamples,
                                      force_exact=True, batch=batch, codes=codes, shared=shared)
        return DeltaStats(delta, None, p, method, n, _join(reason, p_reason))

    def resampled(idx: np.ndarray) -> np.ndarray:
        b_rows = _take(baseline, idx)
        c_rows = _take(candidate, idx, {k: b_rows[k] for k in shared})
        b_ranks, c_ranks = codes.taken(idx)
        return _metric_rows(metric, batch, Rows(b_rows, b_ranks), Rows(c_rows, c_ranks))

    deltas = np.concatenate([resampled(idx) for idx in _bootstrap_indices(boot_rng, n, resamples)])
    ci, ci_reason = _percentile_ci(deltas, confidence, resamples)
    finite = deltas[~np.isnan(deltas)]
    se = float(np.std(finite, ddof=1)) if ci is not None and len(finite) > 1 else None
    if not permutation:
        return DeltaStats(delta, ci, None, "bootstrap-only", n, _join(ci_reason, "permutation test not requested"), se)
    p, method, p_reason = _swap_p(metric, baseline, candidate, delta, perm_rng, resamples, batch=batch,
                                  codes=codes, shared=shared)
    return DeltaStats(delta, ci, p, method, n, _join(ci_reason, p_reason), se)


# ----------------------------------------------------------------------------- power


def _z_sum(alpha: float, power: float) -> float:
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    from scipy import stats as _sps

    return float(_sps.norm.ppf(1.0 - alpha / 2.0) + _sps.norm.ppf(power))


def min_detectable_effect(diffs: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired test at ``alpha`` detects with ``power``.

    ``(z_{1-alpha/2} + z_{power}) * sd(diffs) / sqrt(n)`` — the normal approximation, with the
    sample standard deviation (``ddof=1``) of the per-example differences: pairing is what makes
    this sd small.
    """
    d = _as_per_example(diffs)
    if len(d) < 2:
        raise ValueError("at least 2 differences are needed for a standard deviation")
    return _z_sum(alpha, power) * float(np.std(d, ddof=1)) / math.sqrt(len(d))


def examples_needed(diffs: np.ndarray, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Examples needed for :func:`min_detectable_effect` to reach ``effect`` (at least 2).

    ``ceil(((z_{1-alpha/2} + z_{power}) * sd(diffs) / effect) ** 2)``, with the sd of the pilot
    differences ``diffs``.
    """
    if not effect or math.isnan(effect):
        raise ValueError(f"effect must be a non-zero number, got {effect}")
    d = _as_per_example(diffs)
    if len(d) < 2:
        raise ValueError("at least 2 differences are needed for a standard deviation")
    raw = (_z_sum(alpha, power) * float(np.std(d, ddof=1)) / abs(effect)) ** 2
    return max(2, math.ceil(raw * (1.0 - 1e-12)))
