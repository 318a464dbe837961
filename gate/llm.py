"""The generative side's vocabulary: requests, responses, and the :class:`Generator` protocol.

Every generative provider (an OpenAI-compatible endpoint, a local transformers
checkpoint) speaks this protocol, so tasks, the response cache and the dispatcher
never know which one they talk to. A provider *classifies* its failures into the
exceptions below; the dispatcher alone decides what to retry, so the retry
policy (and its counting) exists exactly once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


#: bumped when what a cached response holds changes; older entries are then simply not found
CACHE_FORMAT = 1
#: rough characters per token, for estimates only (the dry run, the run budget); real counts come from the model
CHARS_PER_TOKEN = 4


def estimated_tokens(chars: int) -> int:
    """Tokens estimated from a character count (rounded up): for the dry run and the run budget only."""
    return -(-chars // CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Pricing:
    """US dollars per million tokens, as the suite declares them (gate ships no price list)."""

    input_per_mtok: float
    output_per_mtok: float

    @classmethod
    def declared(cls, spec: Any) -> "Pricing | None":
        """The ``pricing`` option of a model spec (any provider), or None."""
        raw = spec.option("pricing")
        return cls(float(raw["input_per_mtok"]), float(raw["output_per_mtok"])) if raw else None

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float:
        """Dollars for the tokens; NaN when the server did not report them (never a free guess)."""
        if prompt_tokens is None or completion_tokens is None:
            return float("nan")
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for. ``arguments`` is the parsed JSON when it parses, else the raw string."""

    name: str
    arguments: Any

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to obtain. ``sample`` tells repeats apart (each is its own cache entry)."""

    messages: tuple[dict[str, Any], ...]
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    tools: tuple[dict[str, Any], ...] | None = None
    sample: int = 0

    def payload(self) -> dict[str, Any]:
        """Everything that can change the answer, as plain JSON (the cache key is its hash)."""
        return {
            "messages": list(self.messages), "max_tokens": self.max_tokens, "temperature": self.temperature,
            "seed": self.seed, "tools": list(self.tools) if self.tools is not None else None, "sample": self.sample,
        }

    def key(self, model_identity: str) -> str:
        text = json.dumps({"v": CACHE_FORMAT, "model": model_identity, "request": self.payload()}, sort_keys=True,
                          ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def prompt_chars(self) -> int:
        """Characters of prompt (messages and tool definitions), for the dry-run token estimate."""
        size = sum(len(str(m.get("content") or "")) for m in self.messages)
        return size + (len(json.dumps(list(self.tools))) if self.tools else 0)


@dataclass
class ChatResponse:
    """What the model answered, with the measurements of the attempt that succeeded.

    ``latency_ms`` is the successful attempt alone (no back-off, no failed attempts),
    so retries never inflate a model's latency; a cached response keeps the latency
    measured when it was produced.
    """

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    latency_ms: float = 0.0
    #: as the server reported them; None when it did not (cost is then unknown, not zero)
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("cached")
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ChatResponse":
        calls = [ToolCall(c["name"], c["arguments"]) for c in data.get("tool_calls", [])]
        tokens = [None if data[k] is None else int(data[k]) for k in ("prompt_tokens", "completion_tokens")]
        return cls(text=data["text"], tool_calls=calls, finish_reason=data.get("finish_reason"),
                   latency_ms=float(data["latency_ms"]), prompt_tokens=tokens[0], completion_tokens=tokens[1],
                   cached=True)


@dataclass(frozen=True)
class PromptLogprobs:
    """Log-probabilities (natural log) of every token of a text that has a prediction (all but the first)."""

    logprobs: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {"logprobs": list(self.logprobs)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PromptLogprobs":
        return cls(tuple(float(x) for x in data["logprobs"]))


class TransientError(Exception):
    """Worth retrying: rate limit, 5xx, timeout, dropped connection, malformed body."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class NoAnswer(TransientError):
    """No HTTP answer at all: the request timed out, or no connection could be made (``connection_failed``:
    refused, reset, unreachable, a connect timeout). Worth retrying, and what the dispatcher's breaker
    counts while a model has not answered yet (a dead or hung endpoint)."""

    def __init__(self, message: str, connection_failed: bool = False):
        super().__init__(message)
        self.connection_failed = connection_failed


class RequestError(Exception):
    """This request cannot succeed as sent (e.g. HTTP 400); retrying would not help."""


class FatalError(Exception):
    """The model cannot be used at all (bad key, no quota, unknown model): stop at once, retry nothing."""


class Unsupported(Exception):
    """The provider lacks a capability a task needs (e.g. prompt log-probabilities)."""


class Generator(Protocol):
    """A loaded generative model."""

    spec: str
    pricing: Pricing | None
    #: how many requests may be in flight at once (1 for a local model)
    max_concurrency: int | None

    def identity(self) -> str:
        """What the cache keys on: the weights' fingerprint, or model id + base URL for an endpoint."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One completion. Raises one of the exceptions above, never anything else."""

    async def prompt_logprobs(self, text: str) -> PromptLogprobs:
        """Exact token log-probabilities of ``text`` (raises :class:`Unsupported` if the model cannot)."""

    async def aclose(self) -> None:
        """Release connections / memory."""
