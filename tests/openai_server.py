"""A local OpenAI-compatible HTTP server for testing gate's ``openai:`` provider.

Test infrastructure only. It exists so that tests (and the throughput benchmark) can drive the
real ``openai`` SDK against something that speaks the real wire format -- the same paths,
status codes, headers and JSON shapes as api.openai.com or an OpenAI-compatible proxy -- without
a network, a key or a bill, and with faults on demand. Nothing here is mocked at the client:
whatever the SDK accepts from this server it would accept from the real service, and every
fault is what a real server or proxy puts on the wire.

Standard library only: ``http.server.ThreadingHTTPServer`` bound to 127.0.0.1 on an ephemeral
port, serving from a daemon thread; one thread per connection, HTTP/1.1 keep-alive, every
response carries ``Content-Length``, request bodies are read by ``Content-Length`` (or chunked).
The configured ``latency`` is slept in the handler thread, so it never serializes requests.
Rejections (429, 401) skip it, as a real rate limiter answers before any model runs.

Routes (anything else answers 404 ``Invalid URL (METHOD /path)``)::

    POST /v1/chat/completions   scripted answers (``answer``) or an echo of the last user message;
                                tool calls; max_tokens / max_completion_tokens truncation
    POST /v1/embeddings         deterministic hashed bag-of-words vectors (float or base64)
    POST /v1/completions        legacy completions; echo + logprobs gives prompt-token logprobs
    GET  /v1/models             and GET /v1/models/{id}

Faults (``fault`` for the next N matching requests, ``fault_rate`` for a seeded random share):
``429`` (rate_limit_exceeded + retry-after), ``insufficient_quota`` (429), ``500``, ``503``,
``401``, ``timeout`` (answer late), ``truncated`` (body shorter than its Content-Length, then the
connection is closed) and ``malformed`` (200 with a body that is not JSON).

Every request is recorded in ``requests`` as ``{"path", "method", "body", "headers",
"outcome"}``; ``outcome`` is ``"ok"``, the fault kind, or the status code as a string for an
ordinary error answer (``"400"``, ``"404"``; a missing or wrong key is ``"401"``). Server bugs are
answered 500 and kept in ``errors``; a test may assert that it stays empty.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import secrets
import struct
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

try:
    from tests.http_stub import QuietHandler, QuietServer, Served
except ModuleNotFoundError:  # run as `pytest`, not `python -m pytest`
    from http_stub import QuietHandler, QuietServer, Served  # type: ignore[no-redef]

__all__ = ["FAULT_KINDS", "OpenAIServer"]

FAULT_KINDS = frozenset({"429", "insufficient_quota", "500", "503", "401", "timeout", "truncated", "malformed"})

JSON_TYPE = "application/json"
SYSTEM_FINGERPRINT = "fp_gate_test"
DEFAULT_COMPLETION_TOKENS = 16  # the legacy completions endpoint's default max_tokens
TIMEOUT_FAULT_DELAY = 5.0

_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\s*\S+|\s+")      # a word with its leading whitespace; trailing whitespace alone
_EMBED_WORD = re.compile(r"\w+")
# words the legacy completions endpoint "generates" after the prompt (chosen by a stable hash)
_VOCAB = (" the", " of", " and", " a", " to", " in", " is", " was", " it", " for", " on", " with", " as", " at")


# --- wire-level building blocks -------------------------------------------------------------


def _error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@dataclass
class _Reply:
    """What to put on the wire for one request."""

    status: int
    body: dict[str, Any]
    outcome: str
    headers: dict[str, str] | None = None
    delay: float = 0.0            # extra seconds before answering (the "timeout" fault)
    damage: str | None = None     # "truncated" or "malformed": spoil the encoded body


def _error(status: int, message: str, type_: str, code: str | None = None, outcome: str | None = None,
           headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, _error_body(message, type_, code), outcome or str(status), headers)


@dataclass
class _Answer:
    text: str | None
    match: str | None
    model: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str | None


@dataclass
class _Fault:
    kind: str
    remaining: int
    path: str | None
    match: str | None
    model: str | None
    retry_after: float | None


@dataclass
class _Request:
    """The parts of a request that answers and faults are matched on."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]

    @property
    def model(self) -> str | None:
        model = self.body.get("model") if isinstance(self.body, dict) else None
        return model if isinstance(model, str) else None

    @property
    def text(self) -> str:
        """The text a ``match`` is looked for in: the last user message of a chat request, the
        input of an embeddings request (joined by newlines), the prompt of a completions request."""
        if not isinstance(self.body, dict):
            return ""
        if self.path == "/v1/chat/completions":
            return _last_user_text(self.body.get("messages"))
        if self.path == "/v1/embeddings":
            inputs = self.body.get("input")
            return "\n".join(i for i in (inputs if isinstance(inputs, list) else [inputs]) if isinstance(i, str))
        if self.path == "/v1/completions":
            prompt = self.body.get("prompt")
            return "\n".join(p for p in (prompt if isinstance(prompt, list) else [prompt]) if isinstance(p, str))
        return ""


def _content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of content parts (text parts only)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _words(text: str | None) -> int:
    return len(_WORD.findall(text or ""))


def _truncate_words(text: str, limit: int) -> str:
    """The first ``limit`` whitespace-separated words of ``text``, spacing kept."""
    words = list(_WORD.finditer(text))
    if len(words) <= limit:
        return text
    return text[: words[limit - 1].end()] if limit > 0 else ""


def _stable_hash(*parts: str, size: int = 8) -> int:
    data = "\x1f".join(parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "little")


def _format_seconds(value: float) -> str:
    """``retry-after`` as OpenAI sends it: whole seconds bare, fractions as a plain decimal."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")[:24]


def _int_param(body: dict[str, Any], name: str) -> int | None | _Reply:
    """An optional integer parameter, or the 400 a real server gives for a wrong type."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return _error(400, f"Invalid type for '{name}': expected an integer, but got {type(value).__name__} instead.",
                      "invalid_request_error", "invalid_type")
    return value


# --- the HTTP layer -------------------------------------------------------------------------


class _HTTPServer(QuietServer):
    request_queue_size = 512
    app: "OpenAIServer"


class _Handler(QuietHandler):
    disable_nagle_algorithm = True  # headers and body go out in two writes; do not wait for delayed ACKs
    server: _HTTPServer
    server_version = "gate-openai-test"

    def owner(self) -> Any:
        return self.server.app

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, oversized headers) as OpenAI-style JSON, then close."""
        self.close_connection = True
        payload = json.dumps(_error_body(message or HTTPStatus(code).phrase, "invalid_request_error")).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:
            pass

    def _serve(self) -> None:
        app = self.server.app
        try:
            raw = self._read_body()
        except ValueError:
            self.send_error(400, "Invalid Content-Length or chunked encoding.")
            return
        try:
            reply = app._handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
        except Exception as exc:  # a bug in this server: answer 500 and keep it for the test to see
            app.errors.append(f"{type(exc).__name__}: {exc}")
            reply = _error(500, f"gate test server bug: {type(exc).__name__}: {exc}", "server_error",
                           outcome="server_bug")
        # A rate limiter or key check rejects before any model runs: 429 and 401 come back at once.
        wait = reply.delay + (0.0 if reply.status in (401, 429) else app.latency)
        if wait > 0 and app._stopping.wait(wait):
            self.close_connection = True  # the server is stopping: do not answer late
            return
        try:
            self._send(reply)
        except OSError:  # the client gave up (its timeout fired) or the server is stopping
            self.close_connection = True

    def _send(self, reply: _Reply) -> None:
        payload = json.dumps(reply.body).encode("utf-8")
        length = len(payload)
        if reply.damage == "truncated":  # announce the whole body, deliver a part, hang up
            payload = payload[: max(1, length // 2)]
            self.close_connection = True
        elif reply.damage == "malformed":  # a proper prefix of a JSON object is never valid JSON
            payload = payload[: max(1, length // 3)]
            length = len(payload)
        self.send_response(reply.status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(length))
        self.send_header("x-request-id", _new_id("req_"))
        self.send_header("openai-processing-ms", "1")
        for name, value in (reply.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


# --- the server -----------------------------------------------------------------------------


class OpenAIServer(Served):
    """An in-process OpenAI-compatible API for tests; see the module docstring.

    Use as a context manager (``with OpenAIServer() as server: ...``) and point a client at
    ``server.base_url``. ``latency``, ``known_models`` and ``no_logprobs_models`` may be changed
    at any time; answers and faults are scripted with ``answer``, ``fault`` and ``fault_rate``.
    """

    server_class = _HTTPServer
    handler_class = _Handler
    thread_name = "openai-test-server"

    def __init__(self, *, latency: float = 0.0, api_key: str | None = "test-key", embedding_dim: int = 32,
                 seed: int = 0) -> None:
        if embedding_dim < 1:
            raise ValueError("embedding_dim must be at least 1")
        self.latency = latency
        self.api_key = api_key
        self.embedding_dim = embedding_dim
        self.seed = seed
        self.no_logprobs_models: set[str] = set()
        self.known_models: set[str] | None = None
        self.errors: list[str] = []  # server bugs (answered 500); a test may assert it stays empty
        self._requests: list[dict[str, Any]] = []
        self._answers: list[_Answer] = []
        self._faults: list[_Fault] = []
        self._fault_rates: dict[str, tuple[float, float | None]] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._init_served()
        self._base_url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``openai.OpenAI(base_url=...)``."""
        if not self._base_url:
            raise RuntimeError("OpenAIServer is not started")
        return self._base_url

    def _bound(self, server: QuietServer) -> None:
        self._stopping.clear()
        server.app = self  # type: ignore[attr-defined]
        self._base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    def _stopping_now(self) -> None:
        self._stopping.set()  # wake handlers sleeping their latency

    # --- scripting and inspection ------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received, in arrival order (a snapshot, taken under the lock)."""
        with self._lock:
            return list(self._requests)

    def count(self, path: str | None = None, outcome: str | None = None) -> int:
        """How many requests were received, optionally only to ``path`` and/or with ``outcome``."""
        with self._lock:
            return sum(1 for r in self._requests
                       if (path is None or r["path"] == path) and (outcome is None or r["outcome"] == outcome))

    def reset(self) -> None:
        """Forget the recorded requests and every fault (scripted and random); answers stay."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._fault_rates.clear()

    def answer(self, text: str | None = None, *, match: str | None = None, model: str | None = None,
               tool_calls: list[dict[str, Any]] | None = None, finish_reason: str | None = None) -> None:
        """Script a chat completion answer; the first rule whose ``match`` is a substring of the last
        user message (``None``: any) and whose ``model`` equals the request's (``None``: any) wins.

        ``tool_calls`` are ``[{"name": ..., "arguments": {...}}]``; arguments go on the wire as a
        JSON string, as OpenAI sends them. ``finish_reason`` defaults to ``"tool_calls"`` when
        there are tool calls, else ``"stop"``.
        """
        for call in tool_calls or []:
            if not isinstance(call.get("name"), str):
                raise ValueError(f"a tool call needs a name: {call!r}")
        with self._lock:
            self._answers.append(_Answer(text, match, model, [dict(c) for c in tool_calls] if tool_calls else None,
                                         finish_reason))

    def clear_answers(self) -> None:
        with self._lock:
            self._answers.clear()

    def fault(self, kind: str, *, times: int = 1, path: str | None = None, match: str | None = None,
              model: str | None = None, retry_after: float | None = None) -> None:
        """Give the next ``times`` matching requests the fault ``kind`` instead of a normal answer.

        ``path`` is the request path (e.g. ``"/v1/embeddings"``); ``match`` a substring of the
        request's text (last user message, embeddings input, completions prompt); ``model`` the
        request's model; ``None`` matches anything. ``retry_after`` is the ``retry-after`` header
        of a ``"429"`` (default 0) or the delay of a ``"timeout"`` (default 5 s).
        """
        self._check_kind(kind)
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(_Fault(kind, times, path, match, model, retry_after))

    def fault_rate(self, kind: str, rate: float, *, retry_after: float | None = None) -> None:
        """Give each request, independently, the fault ``kind`` with probability ``rate`` (seeded
        RNG; scripted faults come first). A rate of 0 switches the kind off."""
        self._check_kind(kind)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        with self._lock:
            if rate == 0:
                self._fault_rates.pop(kind, None)
            else:
                self._fault_rates[kind] = (rate, retry_after)

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")

    # --- request handling --------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Reply:
        path = unquote(urlsplit(target).path)
        body: Any = None
        invalid_json = False
        if raw:
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, ValueError):
                invalid_json = True
        request = _Request(method, path, body, headers)
        with self._lock:  # decide and record atomically, so faults are consumed in arrival order
            reply = self._reply(request, invalid_json)
            self._requests.append({"path": path, "method": method, "body": body, "headers": headers,
                                   "outcome": reply.outcome})
        return reply

    def _reply(self, request: _Request, invalid_json: bool) -> _Reply:
        denied = self._check_key(request.headers.get("authorization"))
        if denied is not None:
            return denied
        fault = self._take_fault(request)
        if fault is not None and fault.kind not in ("timeout", "truncated", "malformed"):
            return self._fault_reply(fault, request)
        if invalid_json:
            reply = _error(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                                "but what was sent was not valid JSON.)", "invalid_request_error")
        else:
            reply = self._route(request)
        if fault is not None:
            reply.outcome = fault.kind
            if fault.kind == "timeout":
                reply.delay = TIMEOUT_FAULT_DELAY if fault.retry_after is None else fault.retry_after
            else:
                reply.damage = fault.kind
        return reply

    def _check_key(self, authorization: str | None) -> _Reply | None:
        if self.api_key is None:
            return None
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and key.strip() == self.api_key:
            return None
        if not key.strip():
            message = ("You didn't provide an API key. You need to provide your API key in an Authorization header "
                       "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        else:
            key = key.strip()
            shown = f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 8 else "*" * len(key)
            message = (f"Incorrect API key provided: {shown}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.")
        return _error(401, message, "invalid_request_error", "invalid_api_key")

    def _take_fault(self, request: _Request) -> _Fault | None:
        """The scripted fault this request consumes, else a random one (caller holds the lock)."""
        for fault in self._faults:
            if ((fault.path is None or fault.path == request.path)
                    and (fault.model is None or fault.model == request.model)
                    and (fault.match is None or fault.match in request.text)):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        for kind, (rate, retry_after) in self._fault_rates.items():
            if self._rng.random() < rate:
                return _Fault(kind, 1, None, None, None, retry_after)
        return None

    @staticmethod
    def _fault_reply(fault: _Fault, request: _Request) -> _Reply:
        kind = fault.kind
        if kind == "429":
            model = request.model or "this model"
            return _error(429, f"Rate limit reached for {model} in organization org-gatetest on requests per min "
                               "(RPM): Limit 60, Used 60, Requested 1. Please try again in "
                               f"{fault.retry_after or 0}s. Visit https://platform.openai.com/account/rate-limits "
                               "to learn more.", "requests", "rate_limit_exceeded", outcome=kind,
                          headers={"retry-after": _format_seconds(fault.retry_after or 0)})
        if kind == "insufficient_quota":
            return _error(429, "You exceeded your current quota, please check your plan and billing details.",
                          "insufficient_quota", "insufficient_quota", outcome=kind)
        if kind == "500":
            return _error(500, "The server had an error while processing your request. Sorry about that!",
                          "server_error", outcome=kind)
        if kind == "503":
            return _error(503, "The engine is currently overloaded, please try again later.", "server_error",
                          outcome=kind)
        if kind == "401":
            return _error(401, "Incorrect API key provided. You can find your API key at "
                               "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                          "invalid_api_key", outcome=kind)
        raise AssertionError(f"fault {kind!r} has no reply of its own")

    def _route(self, request: _Request) -> _Reply:
        path, method = request.path, request.method
        if method == "POST" and path in ("/v1/chat/completions", "/v1/embeddings", "/v1/completions"):
            body = request.body
            if not isinstance(body, dict):
                return _error(400, "The request body must be a JSON object.", "invalid_request_error")
            if not isinstance(body.get("model"), str) or not body["model"]:
                return _error(400, "you must provide a model parameter", "invalid_request_error")
            unknown = self._unknown_model(body["model"])
            if unknown is not None:
                return unknown
            if path == "/v1/chat/completions":
                return self._chat(body)
            if path == "/v1/embeddings":
                return self._embeddings(body)
            return self._completions(body)
        if method == "GET" and path == "/v1/models":
            return _Reply(200, {"object": "list", "data": [self._model_json(m) for m in self._model_ids()]}, "ok")
        if method == "GET" and path.startswith("/v1/models/"):
            model = path[len("/v1/models/"):]
            return self._unknown_model(model) or _Reply(200, self._model_json(model), "ok")
        return _error(404, f"Invalid URL ({method} {path})", "invalid_request_error")

    def _unknown_model(self, model: str) -> _Reply | None:
        if self.known_models is None or model in self.known_models:
            return None
        return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                      "invalid_request_error", "model_not_found")

    def _model_ids(self) -> list[str]:
        if self.known_models is not None:
            return sorted(self.known_models)
        seen = {r["body"]["model"] for r in self._requests
                if isinstance(r["body"], dict) and isinstance(r["body"].get("model"), str)}
        return sorted(seen | {a.model for a in self._answers if a.model})

    @staticmethod
    def _model_json(model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 0, "owned_by": "gate-test"}

    # --- POST /v1/chat/completions -----------------------------------------------------------

    def _chat(self, body: dict[str, Any]) -> _Reply:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "Missing required parameter: 'messages'." if messages is None
                          else "Invalid 'messages': expected a non-empty array.", "invalid_request_error",
                          "missing_required_parameter" if messages is None else "invalid_value")
        if body.get("stream"):
            return _error(400, "This test server does not stream; send stream=false.", "invalid_request_error")
        n = _int_param(body, "n")
        if isinstance(n, _Reply):
            return n
        if n not in (None, 1):
            return _error(400, "This test server answers only n=1.", "invalid_request_error")
        limit = _int_param(body, "max_completion_tokens")
        if limit is None:
            limit = _int_param(body, "max_tokens")
        if isinstance(limit, _Reply):
            return limit
        if limit is not None and limit < 1:
            return _error(400, f"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, "
                               f"but got {limit} instead.", "invalid_request_error", "integer_below_min_value")

        model: str = body["model"]
        last_user = _last_user_text(messages)
        rule = next((a for a in self._answers
                     if (a.match is None or a.match in last_user) and (a.model is None or a.model == model)), None)
        if rule is None:
            text: str | None = f"[{model}] {last_user}"
            calls: list[dict[str, Any]] = []
            finish = "stop"
        else:
            text = rule.text
            calls = [{"id": _new_id("call_"), "type": "function",
                      "function": {"name": c["name"], "arguments": _arguments_json(c.get("arguments", {}))}}
                     for c in rule.tool_calls or []]
            finish = rule.finish_reason or ("tool_calls" if calls else "stop")
        if text is not None and limit is not None and _words(text) > limit:
            text, finish = _truncate_words(text, limit), "length"

        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = calls
        message["refusal"] = None
        prompt_tokens = sum(_words(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
        completion_tokens = _words(text) + sum(_words(c["function"]["arguments"]) for c in calls)
        return _Reply(200, {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, "ok")

    # --- POST /v1/embeddings -----------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any]) -> _Reply:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            return _error(400, "'$.input' is invalid. This test server accepts a string or a non-empty array of "
                               "strings.", "invalid_request_error")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            return _error(400, f"Invalid value for 'encoding_format': {encoding!r}. Supported values are: "
                               "'float' and 'base64'.", "invalid_request_error", "invalid_value")
        dim = _int_param(body, "dimensions")
        if isinstance(dim, _Reply):
            return dim
        if dim is not None and dim < 1:
            return _error(400, "Invalid 'dimensions': must be at least 1.", "invalid_request_error", "invalid_value")
        model: str = body["model"]
        data = []
        for index, text in enumerate(inputs):
            vector = self.embed(text, model, dim=dim)
            embedding: list[float] | str = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(_words(t) for t in inputs)
        return _Reply(200, {"object": "list", "data": data, "model": model,
                            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, "ok")

    def embed(self, text: str, model: str, *, dim: int | None = None) -> list[float]:
        """The vector this server returns for ``text`` under ``model``: deterministic, unit length.

        A hashed bag of lower-cased words (feature hashing with blake2b: one signed bucket per
        word, short words weighted down as a crude idf), in two halves of the weight: one shared
        by every model and one keyed by the model name, so two models give different but
        correlated vectors. Texts that share words get similar vectors. The values are float32,
        so the float and base64 encodings carry exactly the same numbers.
        """
        dim = dim or self.embedding_dim
        shared = [0.0] * dim
        own = [0.0] * dim
        for word in _EMBED_WORD.findall(text.lower()):
            weight = min(1.0, len(word) / 4)
            for vec, key in ((shared, f"shared/{self.seed}"), (own, f"{model}/{self.seed}")):
                h = _stable_hash(key, word)
                vec[h % dim] += weight if (h >> 32) & 1 else -weight
        combined = [0.8 * s + 0.6 * o for s, o in zip(_unit(shared), _unit(own))]
        if not any(combined):  # no words at all: a fixed direction per model
            combined[_stable_hash(model, str(self.seed)) % dim] = 1.0
        return list(struct.unpack(f"<{dim}f", struct.pack(f"<{dim}f", *_unit(combined))))

    # --- POST /v1/completions (legacy) -------------------------------------------------------

    def _completions(self, body: dict[str, Any]) -> _Reply:
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            return _error(400, "'prompt' must be a string or a non-empty array of strings.", "invalid_request_error")
        max_tokens = _int_param(body, "max_tokens")
        top = _int_param(body, "logprobs")
        for reply in (max_tokens, top):
            if isinstance(reply, _Reply):
                return reply
        assert not isinstance(max_tokens, _Reply) and not isinstance(top, _Reply)
        if max_tokens is None:
            max_tokens = DEFAULT_COMPLETION_TOKENS
        if max_tokens < 0:
            return _error(400, "Invalid 'max_tokens': must be >= 0.", "invalid_request_error", "invalid_value")
        if top is not None and not 0 <= top <= 5:
            return _error(400, "Invalid 'logprobs': must be between 0 and 5.", "invalid_request_error",
                          "invalid_value")
        echo = bool(body.get("echo"))
        model: str = body["model"]
        with_logprobs = top is not None and model not in self.no_logprobs_models

        choices = []
        prompt_tokens = completion_tokens = 0
        for index, text in enumerate(prompts):
            prompt_toks = _TOKEN.findall(text)
            generated: list[str] = []
            prev = prompt_toks[-1] if prompt_toks else ""
            for _ in range(max_tokens):
                prev = _VOCAB[_stable_hash(model, "next", prev) % len(_VOCAB)]
                generated.append(prev)
            prompt_tokens += len(prompt_toks)
            completion_tokens += len(generated)
            tokens = (prompt_toks if echo else []) + generated
            logprobs = None
            if with_logprobs:
                assert top is not None
                before = "" if echo or not prompt_toks else prompt_toks[-1]
                logprobs = _logprobs(model, tokens, first_known=not echo, top=top, before=before)
            choices.append({"text": ("".join(prompt_toks) if echo else "") + "".join(generated), "index": index,
                            "logprobs": logprobs, "finish_reason": "length"})
        return _Reply(200, {
            "id": _new_id("cmpl-"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, "ok")


def token_logprob(model: str, previous: str, token: str) -> float:
    """The deterministic log-probability of ``token`` after ``previous`` under ``model``, in [-6, -0.05]."""
    u = _stable_hash(model, previous, token) / 2.0**64
    return round(-0.05 - 5.95 * u, 6)


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else vector


def _logprobs(model: str, tokens: list[str], *, first_known: bool, top: int, before: str) -> dict[str, Any]:
    """OpenAI's legacy ``logprobs`` object. With echo the first token has no context, so its
    logprob and top_logprobs are null, as the real API sends them."""
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    offsets: list[int] = []
    offset = 0
    prev = before
    for i, tok in enumerate(tokens):
        offsets.append(offset)
        offset += len(tok)
        if i == 0 and not first_known:
            token_logprobs.append(None)
            top_logprobs.append(None)
        else:
            lp = token_logprob(model, prev, tok)
            token_logprobs.append(lp)
            alternatives = {t: token_logprob(model, prev, t) for t in _VOCAB if t != tok}
            best = sorted(alternatives.items(), key=lambda kv: kv[1], reverse=True)[: max(top, 1) - 1]
            top_logprobs.append(dict([(tok, lp), *best]))
        prev = tok
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
            "text_offset": offsets}


def _arguments_json(arguments: Any) -> str:
    """Tool call arguments as OpenAI sends them: a JSON string (a string given is sent as is)."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


# --- helpers for tests that evaluate models served by this server ------------------------------


def suite_model(server: "OpenAIServer", name: str, key_env: str, **options: Any) -> dict[str, Any]:
    """A suite's model entry for ``name`` served here, reading its key from ``key_env``."""
    return {"provider": "openai", "model": name, "base_url": server.base_url, "api_key_env": key_env, **options}


def write_suite(path: Path, baseline: dict, candidate: dict, tasks: list[dict], name: str = "gen") -> Path:
    """A YAML suite whose models sit on lines 4 and 5 and whose task i sits on line 7 + i."""
    lines = ["version: 1", f"name: {name}", "models:", f"  baseline: {json.dumps(baseline)}",
             f"  candidate: {json.dumps(candidate)}", "tasks:"]
    lines += [f"  - {json.dumps(t)}" for t in tasks]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

