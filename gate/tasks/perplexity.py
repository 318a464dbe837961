"""``perplexity``: how well each model predicts held-out text, from exact token log-probabilities.

Suite fields: ``data`` (rows ``{"text"}``, optional ``id``), ``concurrency``.
Metric ``perplexity`` = exp(total negative log-likelihood / total predicted tokens),
token-weighted over the whole file (lower is better). The log-probabilities come
from the model itself: a local checkpoint, or an endpoint that returns prompt
log-probabilities (``/v1/completions`` with ``echo``). An endpoint that does not is
an ``error``, never an estimate. Perplexities are only comparable between models
that share a tokenizer (a fine-tune and its base do).
"""

from __future__ import annotations

import math

import numpy as np

from gate.data import Column, read_table
from gate.llm import estimated_tokens
from gate.metrics import Arrays, MetricDef
from gate.suite import ROLES, ModelSpec, TaskSpec
from gate.tasks import Scores, TaskData, selected
from gate.tasks.generative import DEFAULT_CONCURRENCY, GenContext, Outcome, Planned

COLUMNS = [Column("text", "text"), Column("id", "optional_text")]


def _exp(x: float) -> float:
    """exp that saturates to inf instead of raising (a clamped -9999 log-prob must not crash the run)."""
    return math.exp(x) if x < 709 else float("inf")


def perplexity(arrays: Arrays) -> float:
    tokens = float(np.sum(arrays["tokens"]))
    return _exp(float(np.sum(arrays["nll"])) / tokens) if tokens > 0 else float("nan")


def perplexity_rows(arrays: Arrays) -> np.ndarray:
    """:func:`perplexity` per resample (a leading axis)."""
    nll = np.asarray(arrays["nll"], dtype=np.float64).sum(axis=1)
    tokens = np.asarray(arrays["tokens"], dtype=np.float64).sum(axis=1)
    return np.array([_exp(a / t) if t > 0 else float("nan") for a, t in zip(nll, tokens)])


METRICS = [MetricDef("perplexity", False, perplexity,
                     "exp of the mean negative log-likelihood per predicted token, over all texts",
                     batch=perplexity_rows)]


class PerplexityTask:
    kind = "generative"
    metrics = METRICS
    example_score = ("perplexity", False)

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (see :mod:`gate.catalogue`)."""
        return [m.name for m in METRICS], []

    def __init__(self, data: TaskData, texts: list[str], concurrency: int):
        self.data, self.texts, self.concurrency = data, texts, concurrency

    @classmethod
    def load(cls, spec: TaskSpec) -> "PerplexityTask":
        table = read_table(spec.path("data"), COLUMNS, "perplexity data file")
        texts = [r["text"] for r in table.rows]
        ids = [r["id"] or str(line) for r, line in zip(table.rows, table.lines)]
        data = TaskData(spec=spec, n=len(texts), data_sha256={"data": table.sha256}, example_ids=ids,
                        example_text=[{"text": t} for t in texts])
        return cls(data, texts, int(spec.fields.get("concurrency", DEFAULT_CONCURRENCY)))

    def select(self, indices) -> "PerplexityTask":
        return selected(self, indices, texts=self.texts)

    def plan(self, pair: dict[str, ModelSpec], seed: int | None) -> list[Planned]:
        tokens = sum(estimated_tokens(len(t)) for t in self.texts)
        return [Planned(pair[role], role, len(self.texts), tokens, 0, logprob_texts=self.texts) for role in ROLES]

    async def run(self, ctx: GenContext, pair: dict[str, ModelSpec]) -> Outcome:
        out = Outcome(scores={})
        answers = await ctx.prompt_logprobs_pair(pair, self.texts, concurrency=self.concurrency,
                                                 label=self.data.spec.name)
        for role in ROLES:
            values = answers[role]
            if isinstance(values, Exception):
                out.errors.append(str(values))
                out.scores[role] = None
                continue
            nll = np.array([-sum(v.logprobs) for v in values], dtype=np.float64)
            tokens = np.array([len(v.logprobs) for v in values], dtype=np.float64)
            extras = [{"perplexity": _exp(n / t) if t else None} for n, t in zip(nll, tokens)]
            out.scores[role] = Scores({"nll": nll, "tokens": tokens}, extras)
        return out
