"""What generative tasks share: the context they run in, dry-run plans, metric helpers.

A generative task never talks to a model directly: it asks the runner's
:class:`GenContext` for responses, which goes through the response cache and the
dispatcher (retries, concurrency, accounting). So a task is a pure recipe:
requests out, per-example arrays back, metrics as functions of those arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from gate.llm import ChatRequest, ChatResponse, Pricing, PromptLogprobs, estimated_tokens
from gate.metrics import Arrays, MetricDef
from gate.suite import ModelSpec
from gate.tasks import Scores
#: requests in flight and completion tokens per answer when a task does not say
DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_TOKENS = 256


def task_seed(own: int | None, run_seed: int | None) -> int:
    """The seed a task sends: its own ``seed`` field, else ``gate run --seed``, else 0."""
    return int(own if own is not None else (run_seed if run_seed is not None else 0))


class GenContext(Protocol):
    """The runner's services to a generative task."""

    seed: int | None

    async def chat(self, spec: ModelSpec, requests: Sequence[ChatRequest], *, concurrency: int, label: str,
                   usage_key: str) -> list[ChatResponse]:
        """Responses in order, or :class:`~gate.errors.EvaluationError`."""

    async def chat_pair(self, pair: dict[str, ModelSpec], requests: Sequence[ChatRequest], *, concurrency: int,
                        label: str) -> dict[str, list[ChatResponse] | Exception]:
        """The same ``requests`` answered by each role's model on one schedule (both models' requests for a
        case in the same time window, see :mod:`gate.generative_runtime`): per role the answers in order, or
        the :class:`~gate.errors.EvaluationError` that role met. Usage is recorded under the role."""

    async def prompt_logprobs_pair(self, pair: dict[str, ModelSpec], texts: Sequence[str], *, concurrency: int,
                                   label: str) -> dict[str, list[PromptLogprobs] | Exception]:
        """:meth:`chat_pair` for token log-probabilities."""

    def pricing(self, spec: ModelSpec) -> Pricing | None:
        """The declared price of ``spec`` (None: unknown)."""

    def identity(self, spec: ModelSpec) -> str | None:
        """The cache identity of a loaded model."""


@dataclass
class Planned:
    """Requests a task will send to one model, for ``gate run --dry-run``."""

    spec: ModelSpec
    role: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    #: the exact requests when known in advance (not a judge's: they depend on the answers), so the
    #: dry run can tell which are already in the response cache
    chat_requests: Sequence[ChatRequest] | None = None
    logprob_texts: Sequence[str] | None = None

    @classmethod
    def chats(cls, spec: ModelSpec, role: str, requests: Sequence[ChatRequest]) -> "Planned":
        chars = sum(r.prompt_chars() for r in requests)
        return cls(spec, role, len(requests), estimated_tokens(chars), sum(r.max_tokens for r in requests),
                   chat_requests=requests)


@dataclass
class Outcome:
    """A generative task's result: scores per role (None where the role failed) and what to record."""

    scores: dict[str, Scores | None]
    errors: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def percentile(key: str, q: float):
    """A latency percentile over every sample of every case (numpy's linear interpolation)."""

    def compute(arrays: Arrays) -> float:
        values = np.asarray(arrays[key], dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        return float(np.percentile(values, q)) if values.size else float("nan")

    return compute


def percentile_rows(key: str, q: float):
    """:func:`percentile` per resample (a leading axis); rows holding a NaN take the exact per-row path."""
    one = percentile(key, q)

    def batch(arrays: Arrays) -> np.ndarray:
        values = np.asarray(arrays[key], dtype=np.float64)
        flat = values.reshape(len(values), -1)
        if flat.shape[1] and np.isfinite(flat).all():
            return np.percentile(flat, q, axis=1)
        return np.array([one({key: row}) for row in flat])

    return batch


def total(key: str):
    """The sum of one array over everything (tokens, dollars); NaN when absent or empty."""

    def compute(arrays: Arrays) -> float:
        if key not in arrays:
            return float("nan")
        values = np.asarray(arrays[key], dtype=np.float64)
        return float(values.sum()) if values.size else float("nan")

    return compute


def total_rows(key: str):
    """:func:`total` per resample (a leading axis)."""

    def batch(arrays: Arrays) -> np.ndarray:
        first = next(iter(arrays.values()))
        if key not in arrays:
            return np.full(len(first), np.nan)
        values = np.asarray(arrays[key], dtype=np.float64)
        flat = values.reshape(len(values), -1)
        return flat.sum(axis=1) if flat.shape[1] else np.full(len(values), np.nan)

    return batch


def sliced(metric: MetricDef, code: int, label: str) -> MetricDef:
    """``metric`` restricted to the cases of one category: ``name[label]``."""

    def mask(arrays: Arrays) -> np.ndarray:
        return np.asarray(arrays["category"]) == code

    def compute(arrays: Arrays) -> float:
        keep = mask(arrays)
        return metric.compute({k: v[keep] for k, v in arrays.items()})

    mean = metric.mean
    return MetricDef(f"{metric.name}[{label}]", metric.higher_is_better, mean.restricted(mask) if mean else compute,
                     f"{metric.description} (category {label})",
                     count=lambda arrays: int(np.sum(np.asarray(arrays["category"]) == code)))


def usage_metrics() -> list[MetricDef]:
    """Latency, tokens and cost: every generative task reports them the same way."""
    return [
        MetricDef("latency_p50_ms", False, percentile("latency_ms", 50),
                  "median latency of a request in milliseconds (the successful attempt)",
                  batch=percentile_rows("latency_ms", 50)),
        MetricDef("latency_p99_ms", False, percentile("latency_ms", 99),
                  "99th-percentile latency of a request in milliseconds (the successful attempt)",
                  batch=percentile_rows("latency_ms", 99)),
        MetricDef("prompt_tokens", False, total("prompt_tokens"), "prompt tokens of every request, as reported",
                  batch=total_rows("prompt_tokens")),
        MetricDef("completion_tokens", False, total("completion_tokens"), "completion tokens, as reported",
                  batch=total_rows("completion_tokens")),
        MetricDef("cost_usd", False, total("cost_usd"),
                  "list-price cost of the responses used (declared pricing; cached responses count too)",
                  batch=total_rows("cost_usd")),
    ]


def _count(tokens: int | None) -> float:
    return float("nan") if tokens is None else float(tokens)


def usage_arrays(responses: list[list[ChatResponse]], pricing: Pricing | None) -> dict[str, np.ndarray]:
    """(cases, samples) arrays of latency, tokens and (with pricing) cost."""
    out = {
        "latency_ms": np.array([[r.latency_ms for r in case] for case in responses], dtype=np.float64),
        "prompt_tokens": np.array([[_count(r.prompt_tokens) for r in case] for case in responses], dtype=np.float64),
        "completion_tokens": np.array([[_count(r.completion_tokens) for r in case] for case in responses],
                                      dtype=np.float64),
    }
    if pricing is not None:
        out["cost_usd"] = np.array([[pricing.cost(r.prompt_tokens, r.completion_tokens) for r in case]
                                    for case in responses], dtype=np.float64)
    return out


def answer_json(response: ChatResponse, limit: int = 2000) -> dict[str, Any]:
    """A response as an example row shows it (text cut at ``limit`` characters)."""
    text = response.text if len(response.text) <= limit else response.text[:limit] + "…"
    out: dict[str, Any] = {"answer": text}
    if response.tool_calls:
        out["tool_calls"] = [c.to_json() for c in response.tool_calls]
    return out
