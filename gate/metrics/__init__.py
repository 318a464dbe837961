"""Pure metric functions over raw per-example scores; no model, no I/O.

A :class:`MetricDef` computes one number from a task's per-example arrays. The
same function serves the full run, a shard merge and (later) every bootstrap
resample, so a metric is defined exactly once.
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


def mean_of(key: str) -> Callable[[Arrays], float]:
    """A metric that is the mean of one per-example array (NaN when there are no examples)."""

    def compute(arrays: Arrays) -> float:
        values = arrays[key]
        return float(np.mean(values)) if len(values) else float("nan")

    return compute
