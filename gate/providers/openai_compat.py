"""The ``openai`` provider: chat, embeddings and prompt log-probabilities over the OpenAI API.

Any OpenAI-compatible base URL works (OpenAI, vLLM, Ollama, LiteLLM). The key is
read from the environment variable the suite names (``api_key_env``, default
``OPENAI_API_KEY``), never from the file. The SDK's own retries are switched off
(``max_retries=0``): gate's dispatcher retries instead, because it must fail fast
on ``insufficient_quota`` (a 429 the SDK would keep retrying), honour
``Retry-After`` and count every attempt once. This module only *classifies*
each SDK failure into the exceptions of :mod:`gate.llm`.

Model options (suite file): ``base_url``, ``api_key_env``, ``revision`` (what the weights
behind the model id are, for the response cache), ``timeout`` (seconds to wait for the
answer to one attempt, the read timeout; default 60), ``connect_timeout`` (seconds to
open a connection; default 10), ``max_retries`` (default 4), ``concurrency`` (a cap on
requests in flight to this endpoint), ``pricing`` (``{input_per_mtok,
output_per_mtok}`` in US dollars), ``batch_size`` (texts per embeddings request,
default 128).

A dead or hung endpoint ends the run in ``error`` quickly: failures that got no answer
are :class:`~gate.llm.NoAnswer`, and the dispatcher stops a model that has given no answer
at all within :func:`first_answer_timeout` of its first request (90 s by default), or
could not even connect three times in a row before any success.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import os
import time
from typing import Any, Sequence
from urllib.parse import urlparse

import numpy as np

from gate.errors import BadInput
from gate.llm import (ChatRequest, ChatResponse, FatalError, NoAnswer, Pricing, PromptLogprobs, RequestError,
                      ToolCall, TransientError, Unsupported)
from gate.suite import ModelSpec

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
#: seconds beyond one attempt's connect and read timeouts that a model may take to give its first answer
FIRST_ANSWER_GRACE = 20.0
DEFAULT_EMBED_BATCH = 128


def _where(spec: ModelSpec) -> str:
    return spec.origin or f"model {spec.spec}"


def api_key(spec: ModelSpec) -> str:
    """The model's key: only from a variable the workflow owner allows, only for a host the owner allows
    (:mod:`gate.secrets`); stripped of surrounding whitespace and registered for redaction."""
    from gate.secrets import check_key_destination, check_key_var, read_secret

    name = spec.option("api_key_env", DEFAULT_KEY_ENV)
    check_key_var(name, _where(spec))
    check_key_destination(base_url(spec), _where(spec))
    value = read_secret(name)
    if not value:
        raise BadInput(f"the environment variable {name} is not set; model {spec.spec} reads its API key from it "
                       f"(api_key_env). Set it (any non-empty value for a server without keys, e.g. Ollama)",
                       location=_where(spec))
    return value


def check(spec: ModelSpec, secrets: bool = True) -> None:
    """Bad input before anything is sent: a base URL that is not a URL, a key variable or a destination the
    workflow owner does not allow, a missing key variable (``secrets``: not for ``gate validate``)."""
    from gate.secrets import check_key_destination, check_key_var

    base = spec.option("base_url")
    if base is not None:
        try:
            parsed = urlparse(base)
            parsed.port  # noqa: B018 - raises ValueError for a port out of range
            valid = parsed.scheme in ("http", "https") and bool(parsed.hostname)
        except ValueError:  # e.g. a netloc that changes under NFKC, a port that is not a number
            valid = False
        if not valid:
            raise BadInput(f"base_url {base!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8000/v1",
                           location=_where(spec))
    if secrets:
        api_key(spec)  # checks the variable and the destination, then reads the key
    else:
        check_key_var(spec.option("api_key_env", DEFAULT_KEY_ENV), _where(spec))
        check_key_destination(base_url(spec), _where(spec))


def base_url(spec: ModelSpec) -> str:
    return (spec.option("base_url") or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")


def identity(spec: ModelSpec) -> str:
    """What the response cache keys on: an endpoint's model id is all we can know of its weights, so a
    server that serves new weights under an old name needs ``revision`` (e.g. the commit or checkpoint)."""
    revision = spec.option("revision")
    parts = urlparse(base_url(spec))
    shown = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.hostname else base_url(spec)  # credentials in a URL never reach results.json or a PR
    return f"openai|{shown}|{spec.model}" + (f"|{revision}" if revision else "")


def is_self_hosted(spec: ModelSpec) -> bool:
    """A server on this machine (vLLM, Ollama...) often serves each build's weights under a fixed name."""
    host = (urlparse(base_url(spec)).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.endswith(".local")


def pricing(spec: ModelSpec) -> Pricing | None:
    return Pricing.declared(spec)


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, ``retry-after`` in seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def classify(exc: BaseException, spec: str) -> Exception:
    """The gate exception for an SDK failure (what to retry is decided by the dispatcher)."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        cause = exc.__cause__ or exc
        # the HTTP library's ConnectError / ConnectTimeout (by name: the SDK may bundle its own httpx)
        connect = any(t.__name__ in ("ConnectError", "ConnectTimeout") for t in type(cause).__mro__)
        if isinstance(exc, openai.APITimeoutError):
            return NoAnswer("the connection timed out (connect_timeout)" if connect else
                            "the request timed out (no answer within the read timeout, option 'timeout')",
                            connection_failed=connect)
        return NoAnswer(f"connection failed ({type(cause).__name__}: {cause})", connection_failed=connect)
    if isinstance(exc, openai.APIStatusError):
        status, code = exc.status_code, getattr(exc, "code", None)
        detail = f"HTTP {status}" + (f" {code}" if code else "") + f": {exc.message}"
        kind = getattr(exc, "type", None)
        if status == 429 and "insufficient_quota" in (code, kind) or "insufficient_quota" in str(exc.body):
            return FatalError(f"{detail} (no quota left: add credit or use another key)")
        if status in (401, 403):
            return FatalError(f"{detail} (check the API key in the variable named by api_key_env)")
        if status == 404:
            return FatalError(f"{detail} (is the model id {spec!r} and the base_url right?)")
        if status in (408, 409, 429) or status >= 500:
            return TransientError(detail, _retry_after(exc.response.headers))
        return RequestError(detail)
    if isinstance(exc, (openai.APIResponseValidationError, ValueError, KeyError, TypeError, IndexError,
                        AttributeError)):
        # a 200 whose body is not the JSON it should be: a proxy hiccup, worth another try
        return TransientError(f"malformed response ({type(exc).__name__}: {str(exc)[:200]})")
    if isinstance(exc, openai.OpenAIError):
        return TransientError(f"{type(exc).__name__}: {exc}")
    return RequestError(f"{type(exc).__name__}: {exc}")


def timeouts(spec: ModelSpec) -> tuple[float, float]:
    """``(connect, read)`` seconds of one attempt: options ``connect_timeout`` (default 10, at most the read
    timeout) and ``timeout`` (default 60)."""
    read = float(spec.option("timeout", DEFAULT_TIMEOUT))
    return min(float(spec.option("connect_timeout", DEFAULT_CONNECT_TIMEOUT)), read), read


def first_answer_timeout(spec: ModelSpec) -> float:
    """Seconds after its first request within which a model's endpoint must have answered something (any
    HTTP answer, an error status included), else the model is stopped: one whole attempt and a margin."""
    connect, read = timeouts(spec)
    return connect + read + FIRST_ANSWER_GRACE


def _client(spec: ModelSpec):
    import openai

    connect, read = timeouts(spec)
    # separate connect and read timeouts: an endpoint that is down is told in seconds, a slow answer waits
    return openai.AsyncOpenAI(api_key=api_key(spec), base_url=base_url(spec), max_retries=0,
                              timeout=openai.Timeout(read, connect=connect))


def _parse_arguments(raw: str | None) -> Any:
    try:
        return json.loads(raw or "{}")
    except ValueError:
        return raw


class _Endpoint:
    """What the dispatcher reads from any model behind an endpoint: price, concurrency cap, retry budget."""

    def __init__(self, spec: ModelSpec):
        self._spec = spec
        self.spec = spec.spec
        self.pricing = pricing(spec)
        self.max_concurrency = spec.option("concurrency")
        self.max_retries = spec.option("max_retries")
        self.first_answer_timeout = first_answer_timeout(spec)

    @classmethod
    def load(cls, spec: ModelSpec, **_: Any):
        return cls(spec)

    def identity(self) -> str:
        return identity(self._spec)


class OpenAIGenerator(_Endpoint):
    """A chat model behind an OpenAI-compatible endpoint."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self._client = _client(spec)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        params: dict[str, Any] = {"model": self._spec.model, "messages": list(request.messages),
                                  "max_tokens": request.max_tokens, "temperature": request.temperature}
        if request.seed is not None:
            params["seed"] = request.seed
        if request.tools:
            params["tools"] = list(request.tools)
        start = time.perf_counter()
        try:
            completion = await self._client.chat.completions.create(**params)
            latency = (time.perf_counter() - start) * 1000
            choice = completion.choices[0]
            message = choice.message
            calls = [ToolCall(tc.function.name, _parse_arguments(tc.function.arguments))
                     for tc in (message.tool_calls or []) if getattr(tc, "function", None) is not None]
            usage = completion.usage  # a server that reports none leaves tokens (and cost) unknown, not 0
            return ChatResponse(text=message.content or "", tool_calls=calls, finish_reason=choice.finish_reason,
                                latency_ms=latency, prompt_tokens=usage.prompt_tokens if usage else None,
                                completion_tokens=usage.completion_tokens if usage else None)
        except Exception as exc:  # classified: the dispatcher decides what happens next
            raise classify(exc, self._spec.model) from None

    async def prompt_logprobs(self, text: str) -> PromptLogprobs:
        try:
            completion = await self._client.completions.create(model=self._spec.model, prompt=text, max_tokens=0,
                                                               echo=True, logprobs=0, temperature=0)
            logprobs = completion.choices[0].logprobs
        except Exception as exc:
            raise classify(exc, self._spec.model) from None
        values = getattr(logprobs, "token_logprobs", None) if logprobs is not None else None
        tokens = getattr(logprobs, "tokens", None) if logprobs is not None else None
        # Echoed prompt log-probabilities start with None (the first token has no prediction) and their
        # tokens spell the prompt (after a BOS token, for tokenizers that add one); anything else (a server that ignored echo and generated) is not the
        # text's likelihood, and a made-up perplexity is worse than none.
        if not values or values[0] is not None or any(v is None for v in values[1:]) or (
                tokens is not None and not "".join(tokens).endswith(text)):  # a leading BOS token is fine
            raise Unsupported(f"{self.spec} did not return prompt log-probabilities (/v1/completions with "
                              "echo=true, logprobs=0, max_tokens=0); perplexity needs an endpoint that does, "
                              "or a local model")
        if not all(math.isfinite(float(v)) for v in values[1:]):
            raise RequestError(f"{self.spec} returned non-finite log-probabilities for a text")
        return PromptLogprobs(tuple(float(v) for v in values[1:]))

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIEmbedder(_Endpoint):
    """Embeddings from an OpenAI-compatible endpoint, in batches, float format, with the dispatcher's retries."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.batch_size = int(spec.option("batch_size", DEFAULT_EMBED_BATCH))

    def fingerprint(self) -> str:
        return "sha256:" + hashlib.sha256(self.identity().encode()).hexdigest()

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return asyncio.run(self._encode(list(texts)))

    async def _encode(self, texts: list[str]) -> np.ndarray:
        """Batches of texts of similar length (a server that pads a batch wastes less), each batch's
        vectors turned into float32 at once (a million vectors as Python floats would take ~9 GB) and
        written straight into one matrix in the callers' order: about one matrix at the peak."""
        from gate.dispatch import Dispatcher

        client = _client(self._spec)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        out: dict[str, np.ndarray] = {}

        async def call(batch: list[int]) -> None:
            try:
                result = await client.embeddings.create(model=self._spec.model, input=[texts[i] for i in batch],
                                                        encoding_format="float")
                rows = sorted(result.data, key=lambda d: d.index)
                if len(rows) != len(batch):
                    raise TransientError(f"{len(rows)} embeddings returned for {len(batch)} inputs")
                sizes = {len(r.embedding) for r in rows}
                if len(sizes) != 1 or ("matrix" in out and sizes != {out["matrix"].shape[1]}):
                    raise RequestError(f"embeddings of inconsistent sizes: {sorted(sizes)}"
                                       + (f" after {out['matrix'].shape[1]}" if "matrix" in out else ""))
                vectors = np.asarray([r.embedding for r in rows], dtype=np.float32)
            except (TransientError, RequestError):
                raise
            except Exception as exc:
                raise classify(exc, self._spec.model) from None
            if "matrix" not in out:
                out["matrix"] = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out["matrix"][batch] = vectors

        try:
            await Dispatcher().run_calls(self, [lambda b=b: call(b) for b in batches],
                                         concurrency=self.max_concurrency or 4, label=f"embeddings {self.spec}")
        finally:
            await client.close()
        return out.get("matrix", np.zeros((0, 0), dtype=np.float32))

    async def aclose(self) -> None:
        return None
