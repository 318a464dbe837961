"""The dispatcher's limits with models whose behaviour is known: breakers, the first-answer window, the run's
time limit and budget; and the generative schedule (interleaved, alternating) over fake models.

No timing assertions: a hung call is shown to be abandoned (cancelled), not to end within some time; every
test has a generous hang guard."""

from __future__ import annotations

import asyncio
import random
import time
import pytest

from gate.budget import Budget
from gate.dispatch import Dispatcher, RetryPolicy
from gate.errors import EvaluationError
from gate.generative_runtime import run_schedule, schedule_mode
from gate.llm import ChatRequest, ChatResponse, NoAnswer, Pricing, TransientError
from gate.suite import ModelSpec

FAST = RetryPolicy(max_retries=4, base_delay=0.001)
GUARD = 30.0  # seconds: a hang guard only


def requests(n: int, words: int = 4) -> list[ChatRequest]:
    return [ChatRequest(messages=({"role": "user", "content": " ".join(["word"] * words) + f" {i}"},), max_tokens=1)
            for i in range(n)]


class Fake:
    """A model whose chat does what ``behave(i, request)`` says; records calls and cancellations."""

    max_concurrency = None
    max_retries = None

    def __init__(self, name: str, behave, *, pricing: Pricing | None = None, window: float | None = None):
        self.spec = f"fake:{name}"
        self.behave = behave
        self.pricing = pricing
        self.first_answer_timeout = window
        self.calls: list[tuple[str, int, float]] = []  # ("start" | "end" | "cancelled", index, time)

    def identity(self) -> str:
        return self.spec

    async def chat(self, request: ChatRequest) -> ChatResponse:
        i = int(request.messages[0]["content"].split()[-1])
        self.calls.append(("start", i, time.monotonic()))
        try:
            out = await self.behave(i, request)
        except asyncio.CancelledError:
            self.calls.append(("cancelled", i, time.monotonic()))
            raise
        self.calls.append(("end", i, time.monotonic()))
        return out

    def count(self, kind: str) -> int:
        return sum(1 for c in self.calls if c[0] == kind)


def answer(words: int = 4):
    async def behave(i: int, request: ChatRequest) -> ChatResponse:
        await asyncio.sleep(0)
        return ChatResponse(text="ok", prompt_tokens=words + 1, completion_tokens=1)
    return behave


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, GUARD))


# --- breakers and the first-answer window --------------------------------------------------------------------


def test_a_hung_endpoint_is_stopped_once_it_has_not_answered_within_its_window():
    async def hang(i, request):
        await asyncio.Event().wait()

    model = Fake("hung", hang, window=0.2)
    with pytest.raises(EvaluationError, match="has not answered any request within"):
        run(Dispatcher(policy=FAST).chat(model, requests(6), concurrency=2, label="t"))
    assert model.count("start") == 2  # what was in flight; nothing else was sent
    assert model.count("cancelled") == 2  # and it was abandoned, not waited for


def test_an_answer_within_the_window_keeps_a_slow_model_going():
    async def slow(i, request):
        await asyncio.sleep(0.05)
        return ChatResponse(text="ok")

    model = Fake("slow", slow, window=0.5)
    answers, usage = run(Dispatcher(policy=FAST).chat(model, requests(6), concurrency=2, label="t"))
    assert len(answers) == 6 and usage.attempts == 6


def test_an_error_status_is_an_answer_for_the_window():
    """A rate-limited endpoint answers (429) at once: it is alive, and it is the retries' business."""
    async def limited(i, request):
        if len([c for c in model.calls if c[0] == "start"]) <= 3:
            await asyncio.sleep(0.1)
            raise TransientError("HTTP 429", retry_after=0.0)
        return ChatResponse(text="ok")

    model = Fake("limited", limited, window=0.15)
    answers, usage = run(Dispatcher(policy=FAST).chat(model, requests(3), concurrency=3, label="t"))
    assert len(answers) == 3 and usage.retries == 3


def test_connection_failures_before_any_success_stop_the_model_after_cold_breaker_attempts():
    async def refused(i, request):
        raise NoAnswer("connection failed (ConnectError: refused)", connection_failed=True)

    model = Fake("dead", refused)
    dispatcher = Dispatcher(policy=FAST, cold_span=0.0)
    with pytest.raises(EvaluationError, match="could not connect") as caught:
        run(dispatcher.chat(model, requests(10), concurrency=1, label="t"))
    assert model.count("start") == dispatcher.cold_breaker
    assert caught.value.usage.attempts == dispatcher.cold_breaker


def test_a_burst_of_refused_connections_from_a_starting_server_does_not_stop_the_model():
    """The first wave of requests all fail to connect at once (the server is still starting): that is not a
    dead endpoint until the failures span cold_span seconds, so the retries get their chance."""
    state = {"refused": 0}

    async def starting(i, request):
        if state["refused"] < 4:  # the first wave, sent together
            state["refused"] += 1
            raise NoAnswer("connection failed (ConnectError: refused)", connection_failed=True)
        return ChatResponse(text="ok")

    answers, usage = run(Dispatcher(policy=FAST, cold_span=5.0).chat(Fake("starting", starting), requests(4),
                                                                         concurrency=4, label="t"))
    assert len(answers) == 4 and usage.retries == 4


def test_timeouts_are_retried_not_counted_as_connection_failures():
    state = {"n": 0}

    async def flaky(i, request):
        state["n"] += 1
        if state["n"] <= 4:
            raise NoAnswer("the request timed out")
        return ChatResponse(text="ok")

    model = Fake("flaky", flaky)
    answers, usage = run(Dispatcher(policy=FAST).chat(model, requests(1), concurrency=1, label="t"))
    assert len(answers) == 1 and usage.retries == 4


# --- the run's time limit and budget -------------------------------------------------------------------------


def test_the_run_time_limit_stops_sending_and_abandons_what_is_in_flight():
    async def slow(i, request):
        await asyncio.sleep(60)

    model = Fake("slow", slow)
    dispatcher = Dispatcher(policy=FAST, deadline=time.monotonic() + 0.2, deadline_reason="max_duration_s passed")
    with pytest.raises(EvaluationError, match="were not completed: max_duration_s passed"):
        run(dispatcher.chat(model, requests(8), concurrency=2, label="t"))
    assert model.count("start") == 2 and model.count("cancelled") == 2


def test_the_budget_stops_sending_before_the_spend_would_pass_it():
    price = Pricing(1_000_000.0, 0.0)  # a dollar a token: 5 prompt tokens are $5 per answer
    model = Fake("priced", answer(words=4), pricing=price)
    budget = Budget(12.0)
    with pytest.raises(EvaluationError, match="were not completed: the run budget") as caught:
        run(Dispatcher(policy=FAST, budget=budget).chat(model, requests(10), concurrency=1, label="t"))
    assert model.count("start") == 2  # $10 spent; a third answer would pass $12
    assert budget.spent == 10.0 and budget.stopped and budget.reserved == 0.0
    assert caught.value.usage.requests == 2


def test_answers_dearer_than_their_estimates_scale_later_reservations():
    # each request is estimated at ceil(len/4) = 3 tokens but reports 9: later reservations triple
    price = Pricing(1_000_000.0, 0.0)
    model = Fake("dear", answer(words=8), pricing=price)
    budget = Budget(40.0)
    with pytest.raises(EvaluationError):
        run(Dispatcher(policy=FAST, budget=budget).chat(model, requests(10, words=2), concurrency=1, label="t"))
    assert budget.spent <= budget.limit
    assert model.count("start") == 4  # 4 x $9 = $36; a fifth, reserved at 3 x its estimate, would pass $40


def test_the_budget_counts_what_is_in_flight():
    price = Pricing(1_000_000.0, 0.0)

    async def slow(i, request):
        await asyncio.sleep(0.05)
        return ChatResponse(text="ok", prompt_tokens=3, completion_tokens=0)

    model = Fake("slow", slow, pricing=price)
    budget = Budget(7.0)  # each request is estimated at $3: two in flight at once, never three
    with pytest.raises(EvaluationError):
        run(Dispatcher(policy=FAST, budget=budget).chat(model, requests(6, words=2), concurrency=3, label="t"))
    assert model.count("start") == 2 and budget.spent == 6.0


# --- the schedule --------------------------------------------------------------------------------------------


def _jobs(dispatcher: Dispatcher, models: dict[str, Fake], n: int):
    reqs = requests(n)
    return {role: dispatcher.chat_job(model, reqs, label=role) for role, model in models.items()}


def _starts(models: dict[str, Fake]) -> list[tuple[float, str, int]]:
    return sorted((t, role, i) for role, m in models.items() for kind, i, t in m.calls if kind == "start")


def test_interleaved_sends_each_case_to_both_models_together_in_a_seeded_order():
    def sleeper(delay):
        async def behave(i, request):
            await asyncio.sleep(delay)
            return ChatResponse(text="ok")
        return behave

    models = {"baseline": Fake("b", sleeper(0.001)), "candidate": Fake("c", sleeper(0.02))}
    n = 16
    jobs = _jobs(Dispatcher(policy=FAST), models, n)
    run(run_schedule(jobs, {"baseline": 1, "candidate": 1}, "interleaved", random.Random(7)))
    started = [(role, i) for _, role, i in _starts(models)]
    drawn = random.Random(7)
    expected = []
    for i in range(n):
        first = ["baseline", "candidate"] if drawn.random() < 0.5 else ["candidate", "baseline"]
        expected += [(role, i) for role in first]
    assert started == expected  # case by case, both models together, the faster one never running ahead
    assert {started[2 * i][0] for i in range(n)} == {"baseline", "candidate"}  # both orders occur
    for job in jobs.values():
        assert len(job.finish()[0]) == n


def test_each_model_keeps_its_own_concurrency_limit():
    inflight = {"baseline": 0, "candidate": 0}
    peak = {"baseline": 0, "candidate": 0}

    def tracked(role):
        async def behave(i, request):
            inflight[role] += 1
            peak[role] = max(peak[role], inflight[role])
            await asyncio.sleep(0.01)
            inflight[role] -= 1
            return ChatResponse(text="ok")
        return behave

    models = {"baseline": Fake("b", tracked("baseline")), "candidate": Fake("c", tracked("candidate"))}
    jobs = _jobs(Dispatcher(policy=FAST), models, 24)
    run(run_schedule(jobs, {"baseline": 4, "candidate": 2}, "interleaved", random.Random(0)))
    assert peak == {"baseline": 2, "candidate": 2}  # a case waits for a slot of both: the slower pool paces


def test_alternating_never_overlaps_two_local_models():
    active = {"now": 0, "peak": 0}

    async def local(i, request):
        active["now"] += 1
        active["peak"] = max(active["peak"], active["now"])
        await asyncio.sleep(0.002)
        active["now"] -= 1
        return ChatResponse(text="ok")

    models = {"baseline": Fake("b", local), "candidate": Fake("c", local)}
    jobs = _jobs(Dispatcher(policy=FAST), models, 10)
    run(run_schedule(jobs, {"baseline": 1, "candidate": 1}, "alternating", random.Random(3)))
    assert active["peak"] == 1
    started = [(role, i) for _, role, i in _starts(models)]
    assert [i for _, i in started] == [i for i in range(10) for _ in range(2)]


def test_the_order_does_not_depend_on_what_is_cached():
    models = {"baseline": Fake("b", answer()), "candidate": Fake("c", answer())}
    jobs = _jobs(Dispatcher(policy=FAST), models, 8)
    jobs["candidate"].todo = [i for i in jobs["candidate"].todo if i % 3]  # as if cached
    run(run_schedule(jobs, {"baseline": 1, "candidate": 1}, "interleaved", random.Random(5)))
    drawn = random.Random(5)
    expected = []
    for i in range(8):
        first = ["baseline", "candidate"] if drawn.random() < 0.5 else ["candidate", "baseline"]
        expected += [(role, i) for role in first if role == "baseline" or i % 3]
    assert [(role, i) for _, role, i in _starts(models)] == expected


def test_schedule_mode():
    local = ModelSpec(provider="transformers", model="smollm2")
    endpoint = ModelSpec(provider="openai", model="gpt")
    a, b = object(), object()
    assert schedule_mode({"baseline": local, "candidate": local}, {"baseline": a, "candidate": b}) == "alternating"
    assert schedule_mode({"baseline": local, "candidate": endpoint}, {"baseline": a, "candidate": b}) == "interleaved"
    assert schedule_mode({"baseline": endpoint, "candidate": endpoint}, {"baseline": a, "candidate": a}) == "shared"
    assert schedule_mode({"baseline": endpoint, "candidate": endpoint}, {"baseline": a}) == "interleaved"


def test_one_model_in_both_roles_shares_one_pool_without_deadlock():
    model = Fake("same", answer())
    dispatcher = Dispatcher(policy=FAST)
    reqs = requests(5)
    jobs = {role: dispatcher.chat_job(model, reqs, label=role) for role in ("baseline", "candidate")}
    run(run_schedule(jobs, {"baseline": 1, "candidate": 1}, "shared", random.Random(0)))
    assert model.count("end") == 10


def test_budget_scaling():
    budget = Budget(100.0)
    assert budget.scaled(2.0) == 2.0
    assert budget.reserve(2.0)
    budget.settle(2.0, 6.0, 2.0)
    assert budget.spent == 6.0 and budget.scaled(2.0) == 6.0
    budget.settle(0.0, 0.5, 2.0)  # cheaper answers lower the ratio, never below 1
    assert budget.scaled(1.0) == pytest.approx(6.5 / 4.0)
    assert not Budget(1.0).reserve(1.5)
