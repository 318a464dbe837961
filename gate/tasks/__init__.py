"""Task types: read a task's data, list the texts to embed, compute raw per-example scores.

A task never loads a model: the runner encodes every unique text once per model
and hands the task an ``embed`` lookup. Metrics are :class:`~gate.metrics.MetricDef`
functions of the per-example arrays the task returns, so they stay pure.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from gate.errors import BadInput
from gate.metrics import MetricDef
from gate.suite import TaskSpec

Embed = Callable[[list[str]], np.ndarray]


@dataclass
class Scores:
    """One model's raw result on one task: aligned per-example arrays (+ optional extras per example)."""

    arrays: dict[str, np.ndarray]
    extras: list[dict[str, Any]] | None = None


@dataclass
class TaskData:
    """What every loaded task exposes, whatever its type."""

    spec: TaskSpec
    n: int
    data_sha256: dict[str, str]
    example_ids: list[str]
    example_text: list[dict[str, str]]
    notes: list[str] = field(default_factory=list)

    def subset(self, indices: Sequence[int]) -> "TaskData":
        """The same task's data restricted to some examples (a shard), in the order given."""
        return replace(self, n=len(indices), example_ids=[self.example_ids[i] for i in indices],
                       example_text=[self.example_text[i] for i in indices])


def selected(task: Any, indices: Sequence[int], **per_example: Sequence[Any]) -> Any:
    """A shallow copy of ``task`` holding only the examples at ``indices``.

    ``per_example`` names each attribute that has one entry per example (it is subset the same
    way); everything else (a corpus, a train split, the category list) stays shared and whole,
    so a shard scores its examples exactly as the full task would.
    """
    out = copy.copy(task)
    out.data = task.data.subset(indices)
    for name, values in per_example.items():
        if isinstance(values, np.ndarray):
            setattr(out, name, values[np.asarray(indices, dtype=np.int64)])
        else:
            setattr(out, name, [values[i] for i in indices])
    return out


class Task(Protocol):
    """An embedding task (``sts``, ``retrieval``). Generative tasks (``kind = "generative"``) implement
    ``plan`` and ``run`` instead of ``texts`` and ``score``: see :mod:`gate.tasks.generative`."""

    data: TaskData
    metrics: list[MetricDef]
    #: the per-example value (a key of the example rows) and whether higher is better, by which the
    #: report ranks the examples that changed most; None when no single value says it
    example_score: tuple[str, bool] | None
    #: per-example arrays that are bookkeeping, not scores (a category code, a split), left out of examples.jsonl
    hidden_arrays: frozenset[str] = frozenset({"category"})
    #: NOTE: ``kind`` is reserved: ``kind = "generative"`` marks a generative task to the runner

    def texts(self) -> list[str]:
        """Every text the task needs embedded (duplicates allowed; the runner encodes each once)."""

    def score(self, embed: Embed) -> Scores:
        """Per-example raw scores for one model."""

    def select(self, indices: Sequence[int]) -> "Task":
        """The task restricted to the examples at ``indices`` (``gate run --shard``); tasks that need every
        example at once (clustering) set ``shardable = False`` instead and run whole in shard 1."""


def task_types() -> dict[str, Any]:
    """Every task type's class. Each has ``load(spec)`` (reads the data) and ``metric_names(spec)``: the
    names of the metrics it reports, known from the suite alone, and those of them it also reports per
    category of its data (``name[category]``), which :mod:`gate.catalogue` checks rules against."""
    from gate.tasks import (classification, clustering, generation, geometry, holdout, pairs, pairwise, perplexity,
                            retrieval, sts)

    return {"sts": sts.STSTask, "retrieval": retrieval.RetrievalTask, "generation": generation.GenerationTask,
            "perplexity": perplexity.PerplexityTask, "pairwise": pairwise.PairwiseTask,
            "pairs": pairs.PairsTask, "geometry": geometry.GeometryTask, "holdout": holdout.HoldoutTask,
            "classification": classification.ClassificationTask, "clustering": clustering.ClusteringTask}


def load_task(spec: TaskSpec) -> Task:
    """Read and check the task's data files (bad data is :class:`BadInput`, exit 2)."""
    types = task_types()
    if spec.type not in types:  # the schema lists every type; this guards a mismatch
        raise BadInput(f"unknown task type {spec.type!r}", location=spec.pointer)
    return types[spec.type].load(spec)
