"""Pure metric functions over raw per-example scores; no model, no I/O.

A :class:`MetricDef` computes one number from a task's per-example arrays. The
same function serves the full run, a shard merge and every bootstrap resample, so
a metric is defined exactly once.

Most metrics are a mean of one value per example (recall@10 per query, pass per
case). Those are built with :func:`mean_of` / :class:`PerExampleMean`, which also
expose the per-example vector itself: the paired statistics (:mod:`gate.compare`)
then use the vectorized paired tests on it instead of recomputing a black-box
metric thousands of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class MetricDef:
    name: str
    higher_is_better: bool
    compute: Callable[[Arrays], float]
    description: str = ""
    #: how many examples the value rests on, when not all of the task's (a per-category slice)
    count: Callable[[Arrays], int] | None = None
    #: the same metric over a leading axis of resamples (arrays ``(R, n, ...)`` -> ``R`` values), so the
    #: bootstrap and the permutation test run as array operations instead of R calls (optional)
    batch: Callable[[Arrays], np.ndarray] | None = None

    @property
    def mean(self) -> "PerExampleMean | None":
        """The per-example form when the metric is a mean of one value per example, else None."""
        return self.compute if isinstance(self.compute, PerExampleMean) else None


class PerExampleMean:
    """A metric that is the mean over examples of one value per example.

    ``values(arrays)`` gives the per-example vector (NaN where an example has no value).
    With ``skip_nan`` the metric ignores those examples (NaN when none has a value);
    without it any NaN makes the metric NaN, as :func:`numpy.mean` would.
    """

    def __init__(self, values: Callable[[Arrays], np.ndarray], skip_nan: bool = False):
        self.values, self.skip_nan = values, skip_nan

    def __call__(self, arrays: Arrays) -> float:
        v = np.asarray(self.values(arrays), dtype=np.float64)
        if self.skip_nan:
            v = v[~np.isnan(v)]
        return float(np.mean(v)) if v.size else float("nan")

    def restricted(self, mask: Callable[[Arrays], np.ndarray]) -> "PerExampleMean":
        """The same mean over the examples ``mask`` selects (a per-category slice)."""
        return PerExampleMean(lambda arrays: np.asarray(self.values(arrays))[mask(arrays)], self.skip_nan)


def _per_example(values: np.ndarray) -> np.ndarray:
    """One float per example: trailing axes (repeated samples) are averaged."""
    v = np.asarray(values, dtype=np.float64)
    return v.reshape(len(v), -1).mean(axis=1) if v.ndim > 1 else v


def mean_of(key: str) -> PerExampleMean:
    """A metric that is the mean of one per-example array (NaN when there are no examples or a NaN value)."""
    return PerExampleMean(lambda arrays: _per_example(arrays[key]))
