"""Sending requests to generative models: response cache, bounded concurrency, retries, breakers, accounting.

One place owns the retry policy, so every provider behaves the same and every
attempt is counted once: a provider classifies each failure (see :mod:`gate.llm`)
and the dispatcher decides. Transient faults (429, 5xx, timeouts, dropped or
malformed responses) are retried with exponential back-off, honouring the
server's ``Retry-After``; a request still failing after the budget, or a fatal
fault (bad key, no quota, unknown model), ends in :class:`EvaluationError`, so
the verdict is ``error`` (exit 3), never ``pass``. Only the attempt that
succeeded contributes latency and tokens: nothing is double-counted after a retry.

A model is *stopped* (every request of it fails at once, those in flight are abandoned) when

- a fatal fault says it cannot be used;
- the breaker trips: :attr:`Dispatcher.breaker` requests in a row failed after their retries,
  or only :attr:`Dispatcher.cold_breaker` while none of its requests has succeeded yet, or
  that many attempts in a row could not even connect before any success (a dead endpoint);
- its endpoint has not answered anything (not even an error status) within the model's
  ``first_answer_timeout`` of its first request (a hung endpoint: 90 s by default).

The whole run stops sending when its time limit (``deadline``) passes or its
:class:`~gate.budget.Budget` would be passed: each request reserves its estimated cost first.

Two ways in: :meth:`Dispatcher.chat` (and the others) send a batch with their own concurrency
limit; :meth:`Dispatcher.chat_job` hands back a :class:`Job` whose requests a scheduler sends
one by one (the generative runtime interleaves two models' jobs, :mod:`gate.generative_runtime`).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from gate.budget import Budget
from gate.cache import ResponseCache
from gate.errors import EvaluationError
from gate.llm import (ChatRequest, ChatResponse, FatalError, Generator, NoAnswer, PromptLogprobs,
                      RequestError, TransientError, Unsupported, estimated_tokens)

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


def chat_estimate(request: ChatRequest, pricing: Any) -> float:
    """The dry run's estimate of one chat request in dollars: prompt characters / 4, ``max_tokens`` completion."""
    if pricing is None:
        return 0.0
    return pricing.cost(estimated_tokens(request.prompt_chars()), request.max_tokens)


class Failed(Exception):
    """One request that did not succeed within the policy (the message says why)."""


class Halted(Exception):
    """The run stopped sending (its time limit passed, or its budget would be passed)."""


@dataclass
class _ModelState:
    """What the dispatcher knows about one loaded model during the run."""

    fatal: str | None = None
    #: requests in a row that failed after their retries
    failing: int = 0
    #: attempts in a row that could not connect, and when the first of them failed
    unconnected: int = 0
    unconnected_since: float = 0.0
    succeeded: bool = False
    #: any answer from the endpoint, an error status included
    answered: bool = False
    started: bool = False
    stop: asyncio.Future | None = None
    timer: asyncio.TimerHandle | None = None


@dataclass
class Job(Generic[T]):
    """One model's share of a batch: the cache already asked; :meth:`send` obtains answer ``i`` (with retries,
    its failure recorded), :meth:`finish` returns every answer in order with the usage, or raises."""

    dispatcher: "Dispatcher"
    model: Any
    label: str
    keys: list[str]
    results: list[Any]
    todo: list[int]
    usage: Usage
    call: Callable[[int], Awaitable[T]]
    store: Callable[[int, Any], None]
    estimate: Callable[[int], float]
    cost: Callable[[Any], float | None]
    #: what the fresh answers cost (None: the model has no declared price)
    spend: Callable[[list[Any]], float | None] = lambda fresh: None
    errors: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.rng = self.dispatcher._rng()

    async def send(self, i: int) -> None:
        """Obtain answer ``i``: stored when it comes, else its failure recorded (never raises, but for cancellation)."""
        if self.unsupported:
            return
        try:
            value = await self.dispatcher._attempts(self.model, lambda: self.call(i), self.usage, self.rng,
                                                    self.estimate(i), self.cost)
        except (Failed, FatalError, Halted) as exc:
            self.errors.append(str(exc))
            return
        except Unsupported as exc:  # the capability is missing: asking again cannot help
            self.unsupported.append(str(exc))
            self.errors.append(str(exc))
            return
        except Exception as exc:  # a bug in a provider: this model's task fails (an error, never a pass), the run goes on
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        self.store(i, value)
        self.done += 1
        now = time.monotonic()
        if now - self.last >= 10 or self.done == len(self.todo):
            self.last = now
            self.dispatcher.log(f"  {self.label}: {self.done}/{len(self.todo)} requests done in "
                                f"{now - self.started:.1f} s ({self.usage.retries} retries, "
                                f"{self.usage.failures} failed)")

    def finish(self) -> tuple[list[Any], Usage]:
        """Every answer in order with the usage, or :class:`EvaluationError` (its ``usage`` attached)."""
        fresh = [self.results[i] for i in self.todo if self.results[i] is not None]
        self.usage.spent_usd = self.spend(fresh)
        self.dispatcher._raise(self.model, self.errors, len(self.keys), self.label, self.usage)
        return [r for r in self.results if r is not None], self.usage


@dataclass
class Dispatcher:
    """Sends requests for the runner. One per run; holds the cache, the per-model state and the run's limits."""

    cache: ResponseCache | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    log: Log = lambda msg: None
    seed: int = 0
    #: this many requests in a row failing after their retries means the endpoint is down: stop sending
    breaker: int = 8
    #: the same, and attempts in a row that cannot connect, while none of the model's requests has succeeded
    cold_breaker: int = 3
    #: ...and the connection failures must span this many seconds (a server starting up is not a dead one)
    cold_span: float = 5.0
    #: ``time.monotonic()`` after which nothing is sent and what is in flight is abandoned (None: no limit)
    deadline: float | None = None
    deadline_reason: str = "the run's time limit passed"
    budget: Budget | None = None
    # keyed by the loaded model object: two endpoints serving the same model id fail independently
    _models: dict[int, _ModelState] = field(default_factory=dict)
    _halted: str | None = None
    _halt: asyncio.Future | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    # -- state ---------------------------------------------------------------------------------------------

    def _bind(self) -> None:
        """Futures and timers belong to the running event loop: (re)create them for this one."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        self._loop = loop
        self._halt = loop.create_future()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.halt(self.deadline_reason)
        elif self.deadline is not None:
            loop.call_later(max(0.0, self.deadline - time.monotonic()), self.halt, self.deadline_reason)
        for state in self._models.values():
            state.stop, state.timer = None, None

    def _state(self, model: Any) -> _ModelState:
        state = self._models.setdefault(id(model), _ModelState())
        if state.stop is None:
            state.stop = self._loop.create_future() if self._loop else None
            if state.fatal is not None and state.stop is not None:
                state.stop.set_result(state.fatal)
        return state

    def fatal(self, model: Any) -> str | None:
        """Why ``model`` cannot be used any more (None while it can)."""
        state = self._models.get(id(model))
        return state.fatal if state else None

    @property
    def halted(self) -> str | None:
        """Why the run stopped sending (None while it sends)."""
        return self._halted

    def halt(self, reason: str, abandon: bool = True) -> None:
        """Stop sending anything, for every model; with ``abandon`` (a time limit) requests in flight are
        abandoned too, without (the budget: they are paid for already) they may finish."""
        if self._halted is None:
            self._halted = reason
            self.log(f"stopped: {reason}")
        if abandon and self._halt is not None and not self._halt.done():
            self._halt.set_result(reason)

    def _trip(self, state: _ModelState, reason: str) -> None:
        if state.fatal is None:
            state.fatal = reason
        if state.stop is not None and not state.stop.done():
            state.stop.set_result(reason)
        if state.timer is not None:
            state.timer.cancel()

    def _first_answer_missing(self, model: Any, state: _ModelState, window: float) -> None:
        if not state.answered:
            self._trip(state, f"its endpoint has not answered any request within {window:.0f} s of the first "
                              "(a hung or unreachable endpoint: connect_timeout + timeout + 20 s); stopped sending")

    def _failed(self, state: _ModelState, message: str) -> Failed:
        """Count a request that failed for good; trip the breaker so a dead endpoint costs minutes, not hours."""
        state.failing += 1
        limit = self.breaker if state.succeeded else self.cold_breaker
        if state.failing >= limit:
            self._trip(state, f"{state.failing} requests in a row failed after their retries"
                              + ("" if state.succeeded else " and none has succeeded")
                              + f"; stopped sending (last: {message})")
        return Failed(message)

    def _rng(self) -> random.Random:
        return random.Random(self.seed)

    def _policy(self, model: Any) -> RetryPolicy:
        retries = getattr(model, "max_retries", None)
        if retries is None:
            return self.policy
        return RetryPolicy(int(retries), self.policy.base_delay, self.policy.max_delay, self.policy.max_retry_after)

    # -- one request -----------------------------------------------------------------------------------------

    def _check_open(self, state: _ModelState) -> None:
        if state.fatal is not None:
            raise FatalError(state.fatal)
        if self._halted is not None:
            raise Halted(self._halted)

    async def _attempt(self, model: Any, state: _ModelState, call: Callable[[], Awaitable[T]]) -> T:
        """One call, abandoned as soon as the model or the run is stopped."""
        if not state.started:
            state.started = True
            window = getattr(model, "first_answer_timeout", None)
            if window:
                state.timer = self._loop.call_later(window, self._first_answer_missing, model, state, window)
        task = asyncio.ensure_future(call())
        stops = [f for f in (state.stop, self._halt) if f is not None]
        try:
            await asyncio.wait([task, *stops], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nothing left unretrieved
        self._check_open(state)
        raise AssertionError("an attempt ended without an answer or a stop")  # pragma: no cover

    async def _attempts(self, model: Any, call: Callable[[], Awaitable[T]], usage: Usage, rng: random.Random,
                        estimate: float = 0.0, cost: Callable[[Any], float | None] = lambda v: None) -> T:
        """One request with retries; raises :class:`Failed`, :class:`FatalError` or :class:`Halted`."""
        self._bind()
        state = self._state(model)
        retry = 0
        policy = self._policy(model)
        while True:
            self._check_open(state)
            reserved = self.budget.scaled(estimate) if self.budget is not None else 0.0
            if self.budget is not None and not self.budget.reserve(reserved):
                self.halt(self.budget.stopped or "the run budget would be passed", abandon=False)
                raise Halted(self._halted)
            usage.attempts += 1
            try:
                value = await self._attempt(model, state, call)
            except BaseException as exc:
                if self.budget is not None:
                    self.budget.release(reserved)
                if not isinstance(exc, NoAnswer) and isinstance(exc, (TransientError, RequestError, FatalError)):
                    state.answered = True
                if isinstance(exc, (Halted, asyncio.CancelledError)):
                    raise
                if isinstance(exc, FatalError):
                    self._trip(state, str(exc))
                    raise FatalError(state.fatal) from None
                if isinstance(exc, RequestError):
                    usage.failures += 1
                    raise self._failed(state, str(exc)) from None
                if not isinstance(exc, TransientError):
                    raise
                if isinstance(exc, NoAnswer) and exc.connection_failed:
                    if state.unconnected == 0:
                        state.unconnected_since = time.monotonic()
                    state.unconnected += 1
                    # a streak, not a wave: the first requests sent at once all fail together against a server
                    # that is still starting, so the breaker also waits until the failures span some seconds
                    lasted = time.monotonic() - state.unconnected_since >= self.cold_span
                    if not state.succeeded and state.unconnected >= self.cold_breaker and lasted:
                        usage.failures += 1
                        self._trip(state, f"{state.unconnected} attempts in a row could not connect and no request "
                                          f"has succeeded; stopped sending (last: {exc})")
                        raise FatalError(state.fatal) from None
                if retry >= policy.max_retries:
                    usage.failures += 1
                    raise self._failed(state, f"{exc} (gave up after {retry} retries)") from None
                if exc.retry_after is not None and exc.retry_after > policy.max_retry_after:
                    usage.failures += 1
                    raise self._failed(state, f"{exc}; the server asks to wait {exc.retry_after:.0f} s, more than "
                                              f"the {policy.max_retry_after:.0f} s gate waits") from None
                delay = policy.delay(retry, exc.retry_after, rng)
                retry += 1
                usage.retries += 1
                await self._sleep(state, delay)
                continue
            state.succeeded = state.answered = True
            state.failing = state.unconnected = 0
            if state.timer is not None:
                state.timer.cancel()
            if self.budget is not None:
                self.budget.settle(reserved, cost(value), estimate)
            return value

    async def _sleep(self, state: _ModelState, delay: float) -> None:
        """A back-off that ends early when the model or the run is stopped."""
        stops = [f for f in (state.stop, self._halt) if f is not None]
        if stops:
            await asyncio.wait(stops, timeout=delay)
        else:
            await asyncio.sleep(delay)

    # -- batches ---------------------------------------------------------------------------------------------

    def chat_job(self, model: Generator, requests: Sequence[ChatRequest], *, label: str) -> Job[ChatResponse]:
        """A job answering ``requests`` (from the cache where possible), for a scheduler to send."""
        pricing = model.pricing
        identity = model.identity()
        return self._job(model, [r.key(identity) for r in requests], ChatResponse.from_json,
                         lambda i: model.chat(requests[i]), lambda r: (r.prompt_tokens or 0, r.completion_tokens or 0),
                         label, estimate=lambda i: chat_estimate(requests[i], pricing),
                         cost=lambda r: None if pricing is None else pricing.cost(r.prompt_tokens, r.completion_tokens),
                         spend=lambda fresh: None if pricing is None else sum(
                             pricing.cost(r.prompt_tokens, r.completion_tokens) for r in fresh))

    def logprobs_job(self, model: Generator, texts: Sequence[str], *, label: str) -> Job[PromptLogprobs]:
        pricing = model.pricing
        identity = model.identity()
        job = self._job(model, [ResponseCache.key("prompt_logprobs", identity, t) for t in texts],
                        PromptLogprobs.from_json, lambda i: model.prompt_logprobs(texts[i]),
                        lambda v: (len(v.logprobs) + 1, 0), label,
                        estimate=lambda i: 0.0 if pricing is None else pricing.cost(
                            estimated_tokens(len(texts[i])), 0),
                        cost=lambda v: None if pricing is None else pricing.cost(len(v.logprobs) + 1, 0))
        job.spend = lambda fresh: None if pricing is None else pricing.cost(job.usage.prompt_tokens, 0)
        return job

    async def chat(self, model: Generator, requests: Sequence[ChatRequest], *, concurrency: int, label: str
                   ) -> tuple[list[ChatResponse], Usage]:
        """Every request answered (from the cache where possible), in order, or :class:`EvaluationError`."""
        job = self.chat_job(model, requests, label=label)
        await self.drain(job, concurrency_limit(model, concurrency))
        return job.finish()  # raises after the spend is known: it is reported

    async def run_calls(self, model: Any, calls: Sequence[Callable[[], Awaitable[T]]], *, concurrency: int,
                        label: str) -> list[T]:
        """Uncached calls (e.g. embedding batches) with the same retries and limits; all succeed or raise."""
        usage = Usage()
        results: list[Any] = [None] * len(calls)

        def store(i: int, value: Any) -> None:
            usage.requests += 1
            results[i] = value

        job: Job[T] = Job(self, model, label, [str(i) for i in range(len(calls))], results, list(range(len(calls))),
                          usage, lambda i: calls[i](), store, lambda i: 0.0, lambda v: None)
        await self.drain(job, concurrency_limit(model, concurrency))
        self._raise(model, job.errors, len(calls), label, usage)
        return results

    def _job(self, model: Any, keys: list[str], parse: Callable[[dict], T], call: Callable[[int], Awaitable[T]],
             tokens: Callable[[T], tuple[int, int]], label: str, *, estimate: Callable[[int], float],
             cost: Callable[[Any], float | None], spend: Callable[[list[Any]], float | None] = lambda f: None
             ) -> Job[T]:
        """Answers for ``keys`` from the response cache; the rest are the job's ``todo``, stored as they come."""
        usage = Usage()
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

        return Job(self, model, label, keys, results, todo, usage, call, store, estimate, cost, spend)

    async def drain(self, job: Job, limit: int) -> None:
        """Send every request of ``job`` with at most ``limit`` in flight."""
        if not job.todo:
            return
        semaphore = asyncio.Semaphore(limit)

        async def one(i: int) -> None:
            async with semaphore:
                await job.send(i)

        await asyncio.gather(*(one(i) for i in job.todo))

    def _raise(self, model: Any, errors: list[str], total: int, label: str, usage: Usage) -> None:
        error = None
        fatal = self.fatal(model)
        if fatal is not None:
            error = EvaluationError(f"{label}: model {model.spec} cannot be used: {fatal}")
        elif errors and self._halted is not None:
            error = EvaluationError(f"{label}: {len(errors)} of {total} requests to {model.spec} were not "
                                    f"completed: {self._halted}")
        elif errors:
            error = EvaluationError(f"{label}: {len(errors)} of {total} requests to {model.spec} failed "
                                    f"({usage.retries} retries spent); first failure: {errors[0]}")
        if error is not None:
            error.usage = usage  # what the failed attempt cost is still reported
            raise error
