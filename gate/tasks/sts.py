"""``sts``: semantic textual similarity, cosine of the two embeddings vs human scores.

Data rows: ``{"sentence1": str, "sentence2": str, "score": number}``.
Metrics: ``spearman`` and ``pearson`` between cosine similarity and the gold score
(the correlation is recomputed on whatever examples it is given, so resampling
and sharding work on the per-pair arrays).
"""

from __future__ import annotations

import numpy as np
from gate.data import Column, read_table
from gate.errors import BadInput
from gate.metrics import MetricDef
from gate.metrics.correlation import pearson, pearson_rows, rank_average, spearman, spearman_batch
from gate.suite import TaskSpec
from gate.tasks import Embed, Scores, TaskData, selected

COLUMNS = [Column("sentence1", "text"), Column("sentence2", "text"), Column("score", "number")]

METRICS = [
    MetricDef("spearman", True, lambda a: spearman(a["cosine"], a["gold"]),
              "Spearman correlation between cosine similarity and the human score",
              batch=spearman_batch("cosine", "gold")),
    MetricDef("pearson", True, lambda a: pearson(a["cosine"], a["gold"]),
              "Pearson correlation between cosine similarity and the human score",
              batch=lambda a: pearson_rows(a["cosine"], a["gold"])),
]


def rank_error(cosine: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per pair, how far its rank by cosine is from its rank by human score, as a share of n.

    Spearman is the correlation of these ranks, so the pairs with the largest rank error are
    the ones that pull it down: the per-example view of the metric for the report.
    """
    n = len(gold)
    return np.abs(rank_average(cosine) - rank_average(gold)) / n


class STSTask:
    metrics = METRICS
    example_score = ("rank_error", False)

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (see :mod:`gate.catalogue`)."""
        return [m.name for m in METRICS], []

    def __init__(self, data: TaskData, s1: list[str], s2: list[str], gold: np.ndarray):
        self.data, self.s1, self.s2, self.gold = data, s1, s2, gold

    @classmethod
    def load(cls, spec: TaskSpec) -> "STSTask":
        table = read_table(spec.path("data"), COLUMNS, "STS data file")
        gold = np.array([r["score"] for r in table.rows], dtype=np.float64)
        if len(table) < 3:
            raise BadInput(f"{len(table)} pairs; expected at least 3 to compute a correlation", table.path)
        if np.ptp(gold) == 0:
            raise BadInput("every 'score' is the same value; a correlation needs varying scores", table.path)
        s1 = [r["sentence1"] for r in table.rows]
        s2 = [r["sentence2"] for r in table.rows]
        data = TaskData(
            spec=spec, n=len(table), data_sha256={"data": table.sha256},
            example_ids=[str(line) for line in table.lines],
            example_text=[{"sentence1": a, "sentence2": b} for a, b in zip(s1, s2)],
        )
        return cls(data, s1, s2, gold)

    def select(self, indices) -> "STSTask":
        return selected(self, indices, s1=self.s1, s2=self.s2, gold=self.gold)

    def texts(self) -> list[str]:
        return self.s1 + self.s2

    def score(self, embed: Embed) -> Scores:
        a, b = embed(self.s1), embed(self.s2)
        cosine = np.einsum("ij,ij->i", a, b, dtype=np.float64)
        return Scores({"cosine": cosine, "gold": self.gold})

    def example_values(self, arrays) -> dict[str, np.ndarray]:
        """Per-example values shown in examples.jsonl that depend on the whole set (ranks): computed from the
        complete arrays, so a merge of shards shows what a single run shows."""
        return {"rank_error": rank_error(arrays["cosine"], arrays["gold"])}
