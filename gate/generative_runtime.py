"""The generative runtime: models loaded once each, and the one schedule both models' requests go out on.

A latency comparison is only fair when both models are measured under the same conditions. So a
generative task does not send all of the baseline's requests and then all of the candidate's
(client load and drift over the run would land on one model only): for each case (each sample of a
case), the two models' requests go out **in the same time window**, in a **seeded random order**
(which model is sent first is drawn per case from the run's seed and the task name), each model
within its own concurrency limit:

- ``interleaved`` (any endpoint): case *i* is sent once both models have a free slot; then both of
  its requests start at once. A slot frees when its request ends, so a faster model waits for the
  slower one's slots, and the run takes about the slower model's time alone, not the sum of both.
- ``alternating`` (both models local, ``transformers``: they share this machine's CPU or GPU, and
  one running would slow the other): one request at a time, the two models of a case back to back
  in the drawn order. Each latency is measured alone, and drift over the run spreads evenly.

Cached answers are not sent; the order does not depend on which ones are cached. Scores never
depend on the schedule: for a given seed only latency values can move between runs. The mode and
the order's seed are recorded in each task's ``schedule`` in results.json.

Each distinct model is loaded once, on first use, and closed at the end; a model that fails to load
fails every task that needs it (recorded, exit 3). Requests go through one
:class:`~gate.dispatch.Dispatcher`: response cache, retries, breakers, the run's time limit and budget.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from gate.dispatch import Dispatcher, Job, Usage, concurrency_limit
from gate.errors import EvaluationError
from gate.llm import ChatRequest, ChatResponse, Generator, Pricing, PromptLogprobs
from gate.providers import GeneratorLoader
from gate.suite import ROLES, ModelSpec
from gate.tasks import Task
from gate.tasks.generative import Outcome

Log = Callable[[str], None]

#: providers whose models run on this machine (two of them compete for it: their requests alternate)
LOCAL_PROVIDERS = frozenset({"transformers"})
NOTES = {
    "interleaved": "both models' requests for each case went out in the same time window, in a seeded random "
                   "order per case, each model within its own concurrency limit",
    "alternating": "both models run on this machine, so their requests alternate one at a time (the two of a case "
                   "back to back, in a seeded random order): each latency is measured alone, not under the "
                   "other model's load",
    "shared": "one model in both roles: its requests went out through one concurrency limit, in a seeded random "
              "order per case",
}


def order_seed(seed: int | None, label: str) -> int:
    """The seed of a task's send order: from the run's seed and the task's name (stable across runs)."""
    return (int(seed or 0) & 0xFFFFFFFF) << 32 | zlib.crc32(label.encode("utf-8"))


def schedule_mode(specs: dict[str, ModelSpec], models: dict[str, Any]) -> str:
    """``interleaved``, ``alternating`` (every model local) or ``shared`` (one model object in both roles)."""
    if len(models) == 2 and len({id(m) for m in models.values()}) == 1:
        return "shared"
    if len(models) == 2 and all(specs[role].provider in LOCAL_PROVIDERS for role in models):
        return "alternating"
    return "interleaved"


async def run_schedule(jobs: dict[str, Job], limits: dict[str, int], mode: str, rng: random.Random) -> None:
    """Send every job's requests on the schedule ``mode`` (see the module docstring); jobs are aligned by index.

    The order of case ``i`` (``ROLES`` or reversed) is drawn for every case, sent or cached, so it depends on
    the seed alone."""
    if not jobs:
        return
    n = len(next(iter(jobs.values())).keys)
    pending = {role: set(job.todo) for role, job in jobs.items()}
    roles_in = [r for r in ROLES if r in jobs]
    orders = [roles_in if rng.random() < 0.5 else roles_in[::-1] for _ in range(n)]
    if mode == "alternating":
        for i in range(n):
            for role in orders[i]:
                if i in pending[role]:
                    await jobs[role].send(i)
        return
    pools: dict[int, asyncio.Semaphore] = {}
    slots = {role: pools.setdefault(id(jobs[role].model), asyncio.Semaphore(limits[role])) for role in jobs}
    running: list[asyncio.Future] = []

    async def send(role: str, i: int) -> None:
        try:
            await jobs[role].send(i)
        finally:
            slots[role].release()

    try:
        for i in range(n):
            roles = [role for role in orders[i] if i in pending[role]]
            if len({id(slots[r]) for r in roles}) == len(roles):
                for role in roles:  # a slot of each model first: then both requests start together
                    await slots[role].acquire()
                running += [asyncio.ensure_future(send(role, i)) for role in roles]
            else:  # one model in both roles: one pool, taken one slot at a time
                for role in roles:
                    await slots[role].acquire()
                    running.append(asyncio.ensure_future(send(role, i)))
        await asyncio.gather(*running)
    except BaseException:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)  # nothing still running when the models close
        raise


class GenerativeRuntime:
    """The :class:`~gate.tasks.generative.GenContext` the runner gives generative tasks."""

    def __init__(self, dispatcher: Dispatcher, loader: GeneratorLoader, model_cache_dir: Path | None,
                 seed: int | None, log: Log, interleave: bool = True):
        self.dispatcher, self.loader, self.model_cache_dir, self.seed, self.log = (
            dispatcher, loader, model_cache_dir, seed, log)
        #: False sends one role's requests after the other's (the old schedule; for benchmarks only)
        self.interleave = interleave
        self.loaded: dict[tuple, Generator | EvaluationError] = {}
        self.identities: dict[tuple, str] = {}
        self.usage: dict[str, Usage] = {}
        self.schedule: dict[str, Any] | None = None

    def _get(self, spec: ModelSpec) -> Generator:
        if spec.key not in self.loaded:
            self.log(f"model {spec.spec}: loading")
            if self.dispatcher.cache is not None and spec.provider == "openai" and not spec.option("revision"):
                from gate.providers.openai_compat import is_self_hosted

                if is_self_hosted(spec):
                    self.log(f"warning: responses of {spec.spec} are cached by model id and URL only; if this "
                             "server serves new weights under the same name, set the model's 'revision' "
                             "(e.g. the commit) or answers from the old weights will be reused")
            try:
                model = self.loader(spec, self.model_cache_dir)
                self.identities[spec.key] = model.identity()
                self.loaded[spec.key] = model
            except EvaluationError as exc:
                self.loaded[spec.key] = exc
        value = self.loaded[spec.key]
        if isinstance(value, EvaluationError):
            raise EvaluationError(f"model {spec.spec} could not be loaded: {value}")
        return value

    def _record(self, usage_key: str, usage: Usage | None) -> None:
        if usage is None:
            return
        mine = self.usage.setdefault(usage_key, Usage())
        for name, value in vars(usage).items():
            current = getattr(mine, name)
            setattr(mine, name, None if value is None or current is None else current + value)

    # -- one model ---------------------------------------------------------------------------------------------

    async def chat(self, spec: ModelSpec, requests: Sequence[ChatRequest], *, concurrency: int, label: str,
                   usage_key: str) -> list[ChatResponse]:
        model = self._get(spec)
        self.log(f"{label}: {len(requests)} requests to {spec.spec} "
                 f"(at most {concurrency_limit(model, concurrency)} at once)")
        return await self._counted(usage_key, self.dispatcher.chat(model, requests, concurrency=concurrency,
                                                                   label=label))

    async def _counted(self, usage_key: str, dispatched: Awaitable[tuple[list[Any], Usage]]) -> list[Any]:
        """The dispatcher's answers, its usage recorded under ``usage_key`` even when it failed."""
        try:
            out, usage = await dispatched
        except EvaluationError as exc:
            self._record(usage_key, getattr(exc, "usage", None))
            raise
        self._record(usage_key, usage)
        return out

    # -- both models, one schedule -----------------------------------------------------------------------------

    async def chat_pair(self, pair: dict[str, ModelSpec], requests: Sequence[ChatRequest], *, concurrency: int,
                        label: str) -> dict[str, list[ChatResponse] | Exception]:
        return await self._pair(pair, label, concurrency, f"{len(requests)} requests",
                                lambda model, role: self.dispatcher.chat_job(model, requests, label=f"{label} {role}"))

    async def prompt_logprobs_pair(self, pair: dict[str, ModelSpec], texts: Sequence[str], *, concurrency: int,
                                   label: str) -> dict[str, list[PromptLogprobs] | Exception]:
        return await self._pair(pair, label, concurrency, f"log-probabilities of {len(texts)} texts",
                                lambda model, role: self.dispatcher.logprobs_job(model, texts,
                                                                                 label=f"{label} {role}"))

    async def _pair(self, pair: dict[str, ModelSpec], label: str, concurrency: int, what: str,
                    make_job: Callable[[Any, str], Job]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        models: dict[str, Any] = {}
        for role in ROLES:
            try:
                models[role] = self._get(pair[role])
            except EvaluationError as exc:
                out[role] = exc
        jobs = {role: make_job(model, role) for role, model in models.items()}
        # The same model identity asked the same requests in both roles: each answer is asked once and serves
        # both, as the response cache would (sending twice would pay twice, and sample twice at temperature > 0)
        twin = len(jobs) == 2 and jobs["baseline"].keys == jobs["candidate"].keys
        copy_to = jobs.pop("candidate") if twin else None
        limits = {role: concurrency_limit(model, concurrency) for role, model in models.items()}
        mode = schedule_mode(pair, models)
        seed = order_seed(self.seed, label)
        self.schedule = {"mode": mode if self.interleave else "sequential", "order_seed": seed,
                         "note": NOTES[mode] if self.interleave else "one model's requests after the other's"}
        shown = ", ".join(f"{pair[r].spec} at most {limits[r]} at once" for r in jobs)
        self.log(f"{label}: {what} to each model, {self.schedule['mode']} ({shown})")
        if self.interleave:
            await run_schedule(jobs, limits, mode, random.Random(seed))
        else:
            for role, job in jobs.items():
                await self.dispatcher.drain(job, limits[role])
        for role, job in jobs.items():
            try:
                answers, usage = job.finish()
            except EvaluationError as exc:
                self._record(role, getattr(exc, "usage", None))
                out[role] = exc
                continue
            self._record(role, usage)
            out[role] = answers
        if copy_to is not None:
            out["candidate"] = out["baseline"]
            self._record("candidate", Usage(cache_hits=len(copy_to.keys)) if isinstance(out["baseline"], list)
                         else None)
            self.log(f"{label}: the candidate is the baseline model asked the same requests: one answer each")
        return {role: out[role] for role in ROLES}

    # -- the tasks ---------------------------------------------------------------------------------------------

    def pricing(self, spec: ModelSpec) -> Pricing | None:
        return self._get(spec).pricing

    def identity(self, spec: ModelSpec) -> str | None:
        return self.identities.get(spec.key)

    async def run_all(self, tasks: list[Task], task_models: dict[str, dict[str, ModelSpec]]) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        try:
            for task in tasks:
                name = task.data.spec.name
                self.usage, self.schedule = {}, None
                outcome = await task.run(self, task_models[name])
                judge = outcome.info.get("judge")
                if isinstance(judge, dict) and judge.get("warning"):
                    self.log(f"warning: task {name}: {judge['warning']}")
                if self.usage:
                    outcome.info["usage"] = {k: v.to_json() for k, v in self.usage.items()}
                if self.schedule:
                    outcome.info["schedule"] = self.schedule
                outcomes[name] = outcome
        finally:
            for model in self.loaded.values():
                if not isinstance(model, EvaluationError):
                    await model.aclose()
        return outcomes
