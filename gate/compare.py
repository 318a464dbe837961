"""Paired statistics for every metric of a run: ``ci``, ``p_value``, ``se`` (contracts §5).

The run keeps every task's per-example arrays for both models; this module turns a
metric and those arrays into the uncertainty of its delta with :mod:`gate.stats`:

- a metric that is a mean of one value per example (:class:`~gate.metrics.PerExampleMean`:
  recall@k, exact match, pass rate, win rate ...) uses the vectorized paired tests on the
  per-example vectors (exact McNemar for 0/1 outcomes, sign-flip otherwise);
- any other metric (Spearman, BLEU, latency p99, perplexity, totals) is recomputed on
  paired bootstrap resamples and paired swaps of the examples.

Each metric gets its own random stream derived from the run's seed and the metric id,
so a metric's CI does not change when another task is added or the order changes, and
a run is reproducible to the last digit for a given ``--seed``.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from gate.metrics import Arrays, MetricDef
from gate.stats import DeltaStats, paired_delta, paired_mean_delta

DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95
#: fewer paired examples than this: no CI (with the reason); the p-value comes from the exact tests
MIN_EXAMPLES = 10


def metric_seed(seed: int, metric_id: str) -> int:
    """A 63-bit seed for one metric, from the run's seed and the metric id (stable across runs)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(metric_id.encode("utf-8"))])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _fields(st: DeltaStats) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ci": list(st.ci) if st.ci is not None else None,
        "p_value": st.p_value,
        "se": st.se if st.se is not None and np.isfinite(st.se) else None,
        "test": st.method,
    }
    if st.ci is None or st.p_value is None:
        out["stats_note"] = st.reason or "unavailable"
    return out


def unavailable(reason: str) -> dict[str, Any]:
    """The statistics fields of a delta that has none (a model failed, the metric is undefined)."""
    return {"ci": None, "p_value": None, "se": None, "test": "none", "stats_note": reason}


def compare_metric(metric: MetricDef, metric_id: str, baseline: Arrays, candidate: Arrays, *, seed: int = 0,
                   resamples: int = DEFAULT_RESAMPLES, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``ci``, ``p_value``, ``se``, ``test`` (and ``stats_note`` when one is missing), plus ``n_paired``.

    ``n_paired`` is the number of examples the comparison rests on: for a mean that skips
    examples without a value (a JSON-schema check on the cases that carry a schema) it is
    the examples where both models have one.
    """
    kwargs = dict(seed=metric_seed(seed, metric_id), resamples=resamples, confidence=confidence,
                  min_n=MIN_EXAMPLES)
    mean = metric.mean
    paired_n = None
    if mean is not None:
        b = np.asarray(mean.values(baseline), dtype=np.float64)
        c = np.asarray(mean.values(candidate), dtype=np.float64)
        nb, nc = np.isnan(b), np.isnan(c)
        if mean.skip_nan and np.array_equal(nb, nc):
            b, c = b[~nb], c[~nc]
            nb = nc = np.zeros(len(b), dtype=bool)
        if not (nb.any() or nc.any()):
            st = paired_mean_delta(b, c, **kwargs)
            return {**_fields(st), "n_paired": st.n}
        if not mean.skip_nan:
            return {**unavailable("per-example values contain NaN"), "n_paired": int(np.sum(~(nb | nc)))}
        # the two models have values on different examples: the general method, with n = the examples
        # both have a value for
        paired_n = int(np.sum(~(nb | nc)))
    common = sorted(set(baseline) & set(candidate))
    try:
        st = paired_delta(metric.compute, {k: baseline[k] for k in common}, {k: candidate[k] for k in common},
                          batch=metric.batch, **kwargs)
    except (KeyError, ValueError) as exc:  # the two models' arrays differ (e.g. only one has a price)
        return {**unavailable(f"the two models' per-example values cannot be paired ({exc})"), "n_paired": 0}
    return {**_fields(st), "n_paired": st.n if paired_n is None else paired_n}
