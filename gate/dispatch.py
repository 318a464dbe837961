"""Sending requests to generative models: response cache, bounded concurrency, retries, accounting.

One place owns the retry policy, so every provider behaves the same and every
attempt is counted once: a provider classifies each failure (see :mod:`gate.llm`)
and the dispatcher decides. Transient faults (429, 5xx, timeouts, dropped or
malformed responses) are retried with exponential back-off, honouring the
server's ``Retry-After``; a request still failing after the budget, or a fatal
fault (bad key, no quota, unknown model), ends in :class:`EvaluationError`, so
the verdict is ``error`` (exit 3), never ``pass``. Only the attempt that
succeeded contributes latency and tokens: nothing is double-counted after a retry.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from gate.cache import ResponseCache
from gate.errors import EvaluationError
from gate.llm import (ChatRequest, ChatResponse, FatalError, Generator, PromptLogprobs, RequestError,
                      TransientError, Unsupported)

T = TypeVar("T")
Log = Callable[[str], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``max_retries`` counts retries after the first attempt."""

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: a Retry-After longer than this is not waited for: the request fails instead
    max_retry_after: float = 120.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None and retry_after >= 0:
            return retry_after
        return min(self.base_delay * 2 ** retry, self.max_delay) * (0.75 + 0.25 * rng.random())


@dataclass
class Usage:
    """What one model cost one task. ``requests`` counts successful fresh calls; ``attempts`` every call sent."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spent_usd: float | None = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def concurrency_limit(model: Any, requested: int) -> int:
    """Requests in flight at once: the task's wish, capped by what the model allows (1 for a local one)."""
    return max(1, min(requested, getattr(model, "max_concurrency", None) or requested))


def _from_cache(parse: Callable[[dict], T], hit: dict | None) -> T | None:
    """A cached entry, or None when there is none or it does not parse (then it is simply asked again)."""
    if hit is None:
        return None
    try:
        return parse(hit)
    except (KeyError, TypeError, ValueError):
        return None


class Failed(Exception):
    """One request that did not succeed within the policy (the message says why)."""


@dataclass
class Dispatcher:
    """Sends requests for the runner. One per run; holds the cache and the per-model fatal state."""

    cache: ResponseCache | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    log: Log = lambda msg: None
    seed: int = 0
    #: this many requests in a row failing after their retries means the endpoint is down: stop sending
    breaker: int = 8
    # keyed by the loaded model object: two endpoints serving the same model id fail independently
    _fatal: dict[int, str] = field(default_factory=dict)
    _failing: dict[int, int] = field(default_factory=dict)

    def _failed(self, model: Any, message: str) -> Failed:
        """Count a request that failed for good; trip the breaker so a dead endpoint costs minutes, not hours."""
        streak = self._failing[id(model)] = self._failing.get(id(model), 0) + 1
        if streak >= self.breaker and id(model) not in self._fatal:
            self._fatal[id(model)] = (f"{streak} requests in a row failed after their retries; stopped sending "
                                       f"(last: {message})")
        return Failed(message)

    def _rng(self) -> random.Random:
        return random.Random(self.seed)

    def _policy(self, model: Any) -> RetryPolicy:
        retries = getattr(model, "max_retries", None)
        if retries is None:
            return self.policy
        return RetryPolicy(int(retries), self.policy.base_delay, self.policy.max_delay, self.policy.max_retry_after)

    async def run_calls(self, model: Any, calls: Sequence[Callable[[], Awaitable[T]]], *, concurrency: int,
                        label: str) -> list[T]:
        """Uncached calls (e.g. embedding batches) with the same retries and limits; all succeed or raise."""
        usage = Usage()
        results: list[Any] = [None] * len(calls)

        def store(i: int, value: Any) -> None:
            usage.requests += 1
            results[i] = value

        errors = await self._run(model, list(range(len(calls))), concurrency_limit(model, concurrency), label, usage,
                                 lambda i: calls[i](), store)
        self._raise(model, errors, len(calls), label, usage)
        return results

    async def _attempts(self, model: Any, call: Callable[[], Awaitable[T]], usage: Usage, rng: random.Random
                        ) -> T:
        """One request with retries; raises :class:`Failed` or :class:`FatalError`."""
        retry = 0
        policy = self._policy(model)
        while True:
            if id(model) in self._fatal:
                raise FatalError(self._fatal[id(model)])
            usage.attempts += 1
            try:
                value = await call()
                self._failing[id(model)] = 0
                return value
            except FatalError as exc:
                self._fatal.setdefault(id(model), str(exc))
                raise
            except RequestError as exc:
                usage.failures += 1
                raise self._failed(model, str(exc)) from None
            except TransientError as exc:
                if retry >= policy.max_retries:
                    usage.failures += 1
                    raise self._failed(model, f"{exc} (gave up after {retry} retries)") from None
                if exc.retry_after is not None and exc.retry_after > policy.max_retry_after:
                    usage.failures += 1
                    raise self._failed(model, f"{exc}; the server asks to wait {exc.retry_after:.0f} s, more than the "
                                 f"{policy.max_retry_after:.0f} s gate waits") from None
                delay = policy.delay(retry, exc.retry_after, rng)
                retry += 1
                usage.retries += 1
                await asyncio.sleep(delay)

    async def chat(self, model: Generator, requests: Sequence[ChatRequest], *, concurrency: int, label: str
                   ) -> tuple[list[ChatResponse], Usage]:
        """Every request answered (from the cache where possible), in order, or :class:`EvaluationError`."""
        usage = Usage()
        identity = model.identity()
        results, fresh, errors = await self._cached(
            model, [r.key(identity) for r in requests], ChatResponse.from_json, lambda i: model.chat(requests[i]),
            lambda r: (r.prompt_tokens or 0, r.completion_tokens or 0), concurrency, label, usage)
        usage.spent_usd = None if model.pricing is None else sum(
            model.pricing.cost(r.prompt_tokens, r.completion_tokens) for r in fresh)
        self._raise(model, errors, len(requests), label, usage)  # after the spend is known: it is reported
        return results, usage

    async def prompt_logprobs(self, model: Generator, texts: Sequence[str], *, concurrency: int, label: str
                              ) -> tuple[list[PromptLogprobs], Usage]:
        usage = Usage()
        identity = model.identity()
        results, _, errors = await self._cached(
            model, [ResponseCache.key("prompt_logprobs", identity, t) for t in texts], PromptLogprobs.from_json,
            lambda i: model.prompt_logprobs(texts[i]), lambda v: (len(v.logprobs) + 1, 0), concurrency, label,
            usage)
        usage.spent_usd = None if model.pricing is None else model.pricing.cost(usage.prompt_tokens, 0)
        self._raise(model, errors, len(texts), label, usage)
        return results, usage

    async def _cached(self, model: Any, keys: list[str], parse: Callable[[dict], T],
                      call: Callable[[int], Awaitable[T]], tokens: Callable[[T], tuple[int, int]],
                      concurrency: int, label: str, usage: Usage) -> tuple[list[T], list[T], list[str]]:
        """Answers for ``keys`` from the response cache, the rest from ``call(i)`` (stored as they come).

        Returns every answer in order (those that failed left out), the fresh ones, and the errors."""
        results: list[T | None] = [None] * len(keys)
        todo: list[int] = []
        for i, key in enumerate(keys):
            value = _from_cache(parse, self.cache.get(key)) if self.cache else None
            if value is not None:
                results[i] = value
                usage.cache_hits += 1
            else:
                todo.append(i)
        if usage.cache_hits:
            self.log(f"  {label}: {usage.cache_hits} of {len(keys)} responses from the cache")

        def store(i: int, value: Any) -> None:
            prompt, completion = tokens(value)
            usage.requests += 1
            usage.prompt_tokens += prompt
            usage.completion_tokens += completion
            results[i] = value
            if self.cache:
                self.cache.put(keys[i], value.to_json())

        errors = await self._run(model, todo, concurrency_limit(model, concurrency), label, usage, call, store)
        fresh = [results[i] for i in todo if results[i] is not None]
        return [r for r in results if r is not None], fresh, errors

    async def _run(self, model: Generator, todo: list[int], limit: int, label: str, usage: Usage,
                   call: Callable[[int], Awaitable[Any]], store: Callable[[int, Any], None]) -> list[str]:
        """Run ``call(i)`` for every index with at most ``limit`` in flight; progress on long work."""
        if not todo:
            return []
        semaphore = asyncio.Semaphore(limit)
        errors: list[str] = []
        unsupported: list[str] = []
        done = 0
        started = last = time.monotonic()
        rng = self._rng()

        async def one(i: int) -> None:
            nonlocal done, last
            async with semaphore:
                if unsupported:
                    return
                try:
                    value = await self._attempts(model, lambda: call(i), usage, rng)
                except (Failed, FatalError) as exc:
                    errors.append(str(exc))
                    return
                except Unsupported as exc:  # the capability is missing: asking again cannot help
                    unsupported.append(str(exc))
                    errors.append(str(exc))
                    return
            store(i, value)
            done += 1
            now = time.monotonic()
            if now - last >= 10 or done == len(todo):
                last = now
                self.log(f"  {label}: {done}/{len(todo)} requests done in {now - started:.1f} s"
                         f" ({usage.retries} retries, {usage.failures} failed)")

        await asyncio.gather(*(one(i) for i in todo))
        return errors

    def _raise(self, model: Generator, errors: list[str], total: int, label: str, usage: Usage) -> None:
        error = None
        if id(model) in self._fatal:
            error = EvaluationError(f"{label}: model {model.spec} cannot be used: {self._fatal[id(model)]}")
        elif errors:
            error = EvaluationError(f"{label}: {len(errors)} of {total} requests to {model.spec} failed "
                                    f"({usage.retries} retries spent); first failure: {errors[0]}")
        if error is not None:
            error.usage = usage  # what the failed attempt cost is still reported
            raise error
