"""``holdout``: one metric of an inner task type on a ``train`` and a ``holdout`` split; the gap exposes overfitting.

Fields: ``inner`` (the task type whose data and metric are used: ``sts`` or ``pairs``), ``train`` and
``holdout`` (data files in that type's format: what the candidate was tuned on, and data of the same
kind it never saw) and ``metric`` (one of the inner type's metrics: ``spearman`` / ``pearson`` for
``sts``, ``accuracy`` / ``margin`` for ``pairs``; both files of a ``pairs`` holdout must be of the same
kind, pairs or triplets).

Metrics: ``train`` and ``holdout``, the inner metric on each split (the inner metric's direction), and
``gap`` = train - holdout, how much better the model looks on the data it was tuned on (lower is
better; for an inner metric where lower is better the sign is turned, so the gap is still "train looks
better by"). A rule such as ``{"metric": "*/gap", "max": 0.05}`` caps it, and ``max_drop`` on ``gap``'s
candidate-vs-baseline change catches a fine-tune that widened it.

The inner task classes read the files and compute the metric, so a ``holdout`` over ``sts`` scores
exactly like two ``sts`` tasks. Every example belongs to one split (the ``split`` array: 0 train,
1 holdout); each metric reads its split's examples, as a per-category slice reads its category, so the
bootstrap resamples the union of both splits and ``gap``'s CI accounts for both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from gate.errors import BadInput
from gate.metrics import Arrays, MetricDef
from gate.suite import TaskSpec
from gate.tasks import Embed, Scores, TaskData

TRAIN, HOLDOUT = 0, 1
SPLITS = ("train", "holdout")


def inner_types() -> dict[str, Any]:
    from gate.tasks import pairs, sts

    return {"sts": sts.STSTask, "pairs": pairs.PairsTask}


def _split_mask(code: int) -> Callable[[Arrays], np.ndarray]:
    return lambda arrays: np.asarray(arrays["split"]) == code


def _on_split(metric: MetricDef, code: int) -> Callable[[Arrays], float]:
    mask = _split_mask(code)

    def compute(arrays: Arrays) -> float:
        keep = mask(arrays)
        if not keep.any():
            return float("nan")
        return float(metric.compute({k: np.asarray(v)[keep] for k, v in arrays.items()}))

    return compute


def _on_split_rows(batch: Callable[[Arrays], np.ndarray], code: int) -> Callable[[Arrays], np.ndarray]:
    """The inner metric's ``batch`` on one split, over arrays with a leading resample axis ``(R, n, ...)``.

    A resample holds a varying number of each split's examples, so the rows are grouped by that
    number and each group is one rectangular call of the inner batch (a swap test keeps the split
    of every example: one call)."""

    def rows(arrays: Arrays) -> np.ndarray:
        keep = np.asarray(arrays["split"]) == code
        counts = keep.sum(axis=1)
        out = np.full(len(keep), np.nan)
        for k in np.unique(counts[counts > 0]):
            which = np.flatnonzero(counts == k)
            mask = keep[which]
            sub = {}
            for key, v in arrays.items():
                v = np.asarray(v)[which]
                sub[key] = v[mask].reshape((len(which), int(k)) + v.shape[2:])
            out[which] = batch(sub)
        return out

    return rows


def holdout_metrics(inner: MetricDef) -> list[MetricDef]:
    """``train``, ``holdout`` and ``gap`` of one inner metric, over arrays carrying a ``split`` array."""
    out = []
    rows = [_on_split_rows(inner.batch, code) if inner.batch else None for code in (TRAIN, HOLDOUT)]
    for code, name in enumerate(SPLITS):
        mean = inner.mean
        compute = mean.restricted(_split_mask(code)) if mean is not None else _on_split(inner, code)
        out.append(MetricDef(name, inner.higher_is_better, compute, f"{inner.name} on the {name} split: "
                             f"{inner.description}", count=lambda a, m=_split_mask(code): int(np.sum(m(a))),
                             batch=None if mean is not None else rows[code]))
    train, hold = _on_split(inner, TRAIN), _on_split(inner, HOLDOUT)
    sign = 1.0 if inner.higher_is_better else -1.0
    gap_rows = None
    if rows[TRAIN] is not None:
        gap_rows = lambda a: sign * (rows[TRAIN](a) - rows[HOLDOUT](a))  # noqa: E731
    out.append(MetricDef("gap", False, lambda a: sign * (train(a) - hold(a)),
                         f"{inner.name} on the train split minus on the holdout split"
                         f"{'' if inner.higher_is_better else ' (negated: lower is better)'}: how much better "
                         f"the model looks on the data it was tuned on", batch=gap_rows))
    return out


class HoldoutTask:
    hidden_arrays = frozenset({"split", "category"})

    def __init__(self, data: TaskData, inner_type: str, parts: tuple[Any, Any], metric: MetricDef,
                 order: np.ndarray | None = None):
        self.data, self.inner_type, self.parts, self.inner_metric = data, inner_type, parts, metric
        #: after a select(): the position of each selected example in (train part + holdout part) order
        self.order = order
        self.metrics = holdout_metrics(metric)
        self.example_score = parts[0].example_score

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (see :mod:`gate.catalogue`)."""
        return [*SPLITS, "gap"], []

    @classmethod
    def load(cls, spec: TaskSpec) -> "HoldoutTask":
        types = inner_types()
        inner = spec.fields.get("inner")
        if inner not in types:
            raise spec.error("inner", f"unsupported inner task type {inner!r}; expected one of: "
                                      f"{', '.join(sorted(types))}")
        parts = tuple(types[inner].load(replace(spec, type=inner, fields={"data": spec.fields[split]}))
                      for split in SPLITS)
        train, hold = parts
        if getattr(train, "form", None) != getattr(hold, "form", None):
            raise BadInput(f"a file of {hold.form}, but the train file {spec.path('train').name} holds "
                           f"{train.form}; expected the same kind in both splits", spec.path("holdout"))
        valid = [m.name for m in train.metrics if "[" not in m.name]
        name = spec.fields.get("metric")
        if name not in valid:
            raise spec.error("metric", f"unknown metric {name!r} of a{'n' if inner[0] in 'aeiou' else ''} "
                                       f"{inner} task; expected one of: {', '.join(valid)}")
        metric = next(m for m in train.metrics if m.name == name)
        notes = [f"{split}: {note}" for split, part in zip(SPLITS, parts) for note in part.data.notes]
        data = TaskData(
            spec=spec, n=train.data.n + hold.data.n,
            data_sha256={split: part.data.data_sha256["data"] for split, part in zip(SPLITS, parts)},
            example_ids=[f"{split}:{i}" for split, part in zip(SPLITS, parts) for i in part.data.example_ids],
            example_text=train.data.example_text + hold.data.example_text, notes=notes,
        )
        return cls(data, inner, parts, metric)

    def select(self, indices: Sequence[int]) -> "HoldoutTask":
        """The examples at ``indices`` (train first, then holdout, in the numbering of ``data.example_ids``),
        each split's part selected from its inner task; scores come back in the order of ``indices``."""
        n_train = self.parts[0].data.n
        positions = self._positions()
        wanted = [int(positions[i]) for i in indices]
        picks = (sorted(p for p in wanted if p < n_train), sorted(p - n_train for p in wanted if p >= n_train))
        parts = tuple(part.select(pick) for part, pick in zip(self.parts, picks))
        concat = list(picks[0]) + [p + n_train for p in picks[1]]
        where = {p: k for k, p in enumerate(concat)}
        order = np.array([where[p] for p in wanted], dtype=np.int64)
        return HoldoutTask(self.data.subset(indices), self.inner_type, parts, self.inner_metric, order)

    def _positions(self) -> np.ndarray:
        """For each example of ``data``, its position in (train part + holdout part) order."""
        if self.order is not None:
            return self.order
        return np.arange(self.data.n, dtype=np.int64)

    def texts(self) -> list[str]:
        return [t for part in self.parts for t in part.texts()]

    def score(self, embed: Embed) -> Scores:
        scored = [(code, part, part.score(embed)) for code, part in enumerate(self.parts) if part.data.n]
        keys = [k for k in scored[0][2].arrays if k != "category"]  # category codes differ between the splits
        arrays = {k: np.concatenate([np.asarray(s.arrays[k]) for _, _, s in scored]) for k in keys}
        arrays["split"] = np.concatenate([np.full(part.data.n, code, dtype=np.int64) for code, part, _ in scored])
        extras: list[dict[str, Any]] = []
        for _, part, s in scored:
            extras += s.extras if s.extras is not None else [{} for _ in range(part.data.n)]
        if self.order is not None:
            arrays = {k: v[self.order] for k, v in arrays.items()}
            extras = [extras[i] for i in self.order]
        return Scores(arrays, extras)

    def example_values(self, arrays: Arrays) -> dict[str, np.ndarray]:
        """The inner task's whole-set per-example values (an STS pair's rank error), each split on its own."""
        split = np.asarray(arrays["split"])
        out: dict[str, np.ndarray] = {}
        for code, part in enumerate(self.parts):
            values_of = getattr(part, "example_values", None)
            keep = split == code
            if values_of is None or not keep.any():
                continue
            for key, values in values_of({k: np.asarray(v)[keep] for k, v in arrays.items()}).items():
                out.setdefault(key, np.full(len(split), np.nan))[keep] = values
        return out
