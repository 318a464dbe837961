"""Run a suite: embedding tasks, then generative tasks, then one path from raw scores to the verdict.

The order is chosen to fail fast and cheaply: model references, API-key variables
and every data file are checked (bad input, exit 2) before any model is loaded or
any request is sent, and so is the run budget (``--max-cost``, the suite's
``max_cost_usd``: an estimate above it is bad input). Each runtime has its own module:
:mod:`gate.embedding_runtime` encodes every unique text once per model;
:mod:`gate.generative_runtime` sends both models' requests on one interleaved
schedule through a :class:`~gate.dispatch.Dispatcher` (response cache, bounded
concurrency, retries, breakers, the run's time limit and budget). A model that fails
to load, encode or answer does not stop the run: its tasks get no values, the failure
is recorded in ``errors`` and the verdict is ``error`` (exit 3), never ``pass``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import gate
from gate.budget import Budget, budget_limit, check_estimate
from gate.catalogue import check_rules_on_tasks
from gate.cache import EmbeddingCache, ResponseCache
from gate.compare import CONFIDENCE, DEFAULT_RESAMPLES, compare_metric, unavailable
from gate.dispatch import Dispatcher, RetryPolicy
from gate.embedding_runtime import EmbeddingTable, LoadedModel, embed_and_score, normalize
from gate.errors import BadInput
from gate.generative_runtime import GenerativeRuntime
from gate.hub import Resolver
from gate.hub import record as hub_record
from gate.providers import CAPABILITIES, GeneratorLoader, Loader, check_model, load_embedder, load_generator
from gate.suite import ROLES, ModelSpec, Suite
from gate.tasks import Scores, Task, load_task
from gate.tasks.generative import Outcome
from gate.thresholds import Rule, Thresholds, judge

# the names other modules and tests import from here
__all__ = ["ROLES", "EmbeddingTable", "LoadedModel", "RunOutput", "TaskRun", "decide_run", "derive", "draw_maps",
           "model_setup", "normalize", "prepare", "run_suite", "shard_bounds", "shard_tasks"]

Log = Callable[[str], None]
#: the suite's top-level run time limit (seconds from the start of the run)
DURATION_KEY = "max_duration_s"


@dataclass
class TaskRun:
    """One task's raw outcome: per-role scores (None where the model failed) and what to record about it.

    Everything in ``results.json`` is derived from these by :func:`derive`, whether they come from
    this process or from the shards of ``gate run --shard`` (``gate merge``)."""

    task: Task
    scores: dict[str, Scores | None]
    info: dict[str, Any] = field(default_factory=dict)
    #: per role, what besides the spec and fingerprint decides the outputs (options, float16), so
    #: ``gate merge`` can refuse shards run with other settings; not part of ``results.json``
    setup: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutput:
    results: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)
    task_runs: list[TaskRun] = field(default_factory=list)
    #: a shard's embedding-map points by task and role (its rows of the map's texts), for ``gate merge``
    map_points: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _metric_value(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def run_suite(suite: Suite, *, overrides: dict[str, ModelSpec] | None = None,
              rules: Thresholds | list[Rule] | None = None,
              seed: int | None = None, loader: Loader = load_embedder,
              generator_loader: GeneratorLoader = load_generator, cache: EmbeddingCache | None = None,
              responses: ResponseCache | None = None, model_cache_dir: Path | None = None,
              policy: RetryPolicy | None = None, log: Log = lambda msg: None, show_progress: bool = False,
              thresholds_sha256: str | None = None, resamples: int = DEFAULT_RESAMPLES,
              shard: tuple[int, int] | None = None, maps_dir: Path | None = None, max_cost: float | None = None,
              interleave: bool = True) -> RunOutput:
    """Evaluate the suite and decide. Bad input raises before any model loads; model failures are recorded.

    With ``shard=(i, n)`` only the i-th of n slices of every task's examples is evaluated (tasks that
    need all their examples at once run whole in shard 1) and the output's ``task_runs`` are what
    ``gate merge`` combines; the results of a shard are not a verdict. ``max_cost`` is ``--max-cost``
    (the smaller of it and the suite's ``max_cost_usd`` applies; a shard is held to it on its own).
    ``interleave=False`` sends one model's requests after the other's (benchmarks compare the two)."""
    started = time.monotonic()
    limit, source = budget_limit(suite, max_cost)
    # Hub models are resolved and downloaded here, before any model loads (gate.hub)
    def rules_fit(tasks: list[Task]) -> None:  # a misspelled metric fails here, not after the whole run
        if shard is None:
            check_rules_on_tasks(rules, tasks, suite.name)

    task_models, tasks = prepare(suite, overrides, log, hub=Resolver(model_cache_dir, log), after_data=rules_fit)
    if shard is not None:
        tasks = shard_tasks(tasks, *shard, log)
    budget = _budget(limit, source, task_models, tasks, seed, responses, model_cache_dir, log)
    models = _check_models(task_models, tasks)
    errors, embedded, points = embed_and_score(models, [t for t in tasks if _kind(t) == "embedding"], task_models,
                                               loader, cache, log, show_progress,
                                               maps=maps_dir is not None or shard is not None, budget=budget)
    generative = [t for t in tasks if _kind(t) == "generative"]
    outcomes: dict[str, Outcome] = {}
    if generative:
        dispatcher = Dispatcher(cache=responses, policy=policy or RetryPolicy(), log=log, seed=seed or 0,
                                budget=budget, **_deadline(suite, started))
        runtime = GenerativeRuntime(dispatcher, generator_loader, model_cache_dir, seed, log, interleave=interleave)
        outcomes = asyncio.run(runtime.run_all(generative, task_models))
        for task in generative:
            errors.extend(outcomes[task.data.spec.name].errors)
        for key, model in models.items():
            if key in runtime.identities:
                model.fingerprint = runtime.identities[key]
    # a shard's models are compared by spec and fingerprint only (its schema has no revisions)
    task_runs = _collect(tasks, task_models, models, outcomes, embedded, revisions=shard is None)
    if points and maps_dir is not None and shard is None:
        draw_maps(task_runs, points, maps_dir, seed or 0, log)
    first = task_models[suite.tasks[0].name]
    top_models = {}
    for role in ROLES:
        spec = suite.override(role, overrides) or first[role]
        loaded = models.get(spec.key)
        top_models[role] = _model_json(loaded or LoadedModel(spec), revisions=shard is None)
    if budget is not None and budget.spent > budget.limit + 1e-12:
        # answers that cost more than their reservations (a tokenizer far from 4 characters a token): the money
        # was spent, and a run (or a shard, which gate merge then fails) over its budget is never a pass
        errors.append(f"the run spent ${budget.spent:,.4f}, over its budget of ${budget.limit:,.4f} "
                      f"({budget.source}): the answers cost more than estimated")
    if shard is not None:
        return RunOutput({"suite": suite.name, "models": top_models, "errors": errors, "seed": seed,
                          "resamples": resamples}, [], task_runs, points)
    results, examples = decide_run(suite.name, task_runs, top_models, errors, rules, seed, resamples,
                                   thresholds_sha256, log)
    if budget is not None:
        results["budget"] = budget.to_json()
        log(f"run budget: ${budget.spent:,.4f} spent of ${budget.limit:,.4f}"
            + (" (stopped sending)" if budget.stopped else ""))
    return RunOutput(results, examples, task_runs)


def _budget(limit: float | None, source: str, task_models: dict[str, dict[str, ModelSpec]], tasks: list[Task],
            seed: int | None, responses: ResponseCache | None, model_cache_dir: Path | None, log: Log
            ) -> Budget | None:
    """The run budget, once the dry run's estimate of ``tasks`` is known to fit it (bad input otherwise): checked
    after every file is read, before any model loads or any request is sent."""
    if limit is None:
        return None
    from gate.plan import plan_tasks, total_cost, unpriced

    plans = plan_tasks(task_models, tasks, seed, responses, model_cache_dir)
    estimate = total_cost(plans)
    check_estimate(estimate, limit, source, unpriced(plans))
    log(f"run budget ${limit:,.4f} ({source}): the estimate is ${estimate:,.4f}")
    return Budget(limit, source, estimate)


def _deadline(suite: Suite, started: float) -> dict[str, Any]:
    """The dispatcher's run time limit from the suite's ``max_duration_s`` (nothing when it has none)."""
    seconds = suite.document.data.get(DURATION_KEY) if getattr(suite, "document", None) is not None else None
    if seconds is None:
        return {}
    return {"deadline": started + float(seconds),
            "deadline_reason": f"the run's time limit ({DURATION_KEY}: {float(seconds):g} s) passed; requests not "
                               "answered by then were abandoned"}


def decide_run(suite_name: str, task_runs: list[TaskRun], top_models: dict[str, Any], errors: list[str],
               rules: "Thresholds | list[Rule] | None", seed: int | None, resamples: int,
               thresholds_sha256: str | None, log: Log = lambda msg: None
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics, statistics, rules and verdict from raw task outcomes: the one path a run and a merge share."""
    log(f"comparing: paired bootstrap ({resamples} resamples) and permutation tests for every metric")
    start = time.perf_counter()
    metrics, task_info, examples = derive(task_runs, seed or 0, resamples)
    log(f"  {len(metrics)} metrics compared in {time.perf_counter() - start:.1f} s")
    thresholds = rules if isinstance(rules, Thresholds) else Thresholds(list(rules or []))
    rule_results, verdict, reason = judge(thresholds, metrics, task_info, errors)
    results = {
        "schema_version": 1,
        "suite": suite_name,
        "verdict": verdict,
        "reason": reason,
        "gate_version": gate.__version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "stats": {"confidence": CONFIDENCE, "resamples": resamples, "seed": seed or 0, **thresholds.settings()},
        "thresholds": thresholds_sha256,
        "models": top_models,
        "tasks": task_info,
        "metrics": metrics,
        "rules": [r.to_json() for r in rule_results],
        "errors": errors,
    }
    return results, examples


def shard_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """The examples ``[lo, hi)`` of shard ``index`` (1-based) of ``count``: contiguous, sizes differing by 1 at most."""
    return n * (index - 1) // count, n * index // count


def shard_tasks(tasks: list[Task], index: int, count: int, log: Log = lambda msg: None) -> list[Task]:
    """Every task restricted to its slice for shard ``index`` of ``count`` (see :func:`run_suite`)."""
    out = []
    for task in tasks:
        if not getattr(task, "shardable", True):
            if index == 1:
                task.shard_rows = (0, task.data.n, task.data.n)
                out.append(task)
            log(f"task {task.data.spec.name}: needs all its examples at once, "
                + ("runs whole in this shard" if index == 1 else "runs whole in shard 1"))
            continue
        lo, hi = shard_bounds(task.data.n, index, count)
        log(f"task {task.data.spec.name}: examples {lo + 1}-{hi} of {task.data.n} (shard {index}/{count})")
        if hi > lo:
            part = task.select(range(lo, hi))
            part.shard_rows = (lo, hi, task.data.n)
            out.append(part)
    return out


def prepare(suite: Suite, overrides: dict[str, ModelSpec] | None, log: Log = lambda msg: None,
            hub: Resolver | None = None, after_data: Callable[[list[Task]], None] | None = None
            ) -> tuple[dict[str, dict[str, ModelSpec]], list[Task]]:
    """Resolve every task's models and read every data file; all bad input surfaces here (exit 2).

    In the order that fails cheapest first: the models' references, every data file, ``after_data`` (the
    rules checked against the metrics the loaded tasks will produce), then, with ``hub``, the Hub models'
    downloads (without: ``--dry-run``, nothing is downloaded). No model loads here."""
    task_models = {t.name: suite.resolved_models(t, overrides) for t in suite.tasks}
    specs = [spec for pair in task_models.values() for spec in pair.values()]
    for spec in specs:
        check_model(spec)
    tasks: list[Task] = []
    for t in suite.tasks:
        log(f"reading task {t.name} ({t.type})")
        task = load_task(t)
        need = "generate" if _kind(task) == "generative" else "embed"
        for role, spec in task_models[t.name].items():
            _require(spec, need, f"task {t.name!r} ({t.type}) needs a model that can {need}; the {role}")
        for spec in getattr(task, "extra_models", lambda: [])():
            check_model(spec)
            _require(spec, "generate", f"task {t.name!r} ({t.type}) needs a model that can generate; the judge")
            specs.append(spec)
        tasks.append(task)
    if after_data is not None:
        after_data(tasks)
    if hub is not None:
        for spec in specs:
            if spec.hub is not None:  # the rest was checked in full above
                check_model(spec, hub=hub)
    return task_models, tasks


def _require(spec: ModelSpec, capability: str, what: str) -> None:
    if capability not in CAPABILITIES[spec.provider]:
        able = [p for p, caps in CAPABILITIES.items() if capability in caps]
        raise BadInput(f"{what} {spec.spec} is a {spec.provider} model, which cannot; "
                       f"use a provider that can: {', '.join(able)}", location=spec.origin)


def _kind(task: Task) -> str:
    return getattr(task, "kind", "embedding")


def _check_models(task_models: dict[str, dict[str, ModelSpec]], tasks: list[Task]) -> dict[tuple, LoadedModel]:
    """One entry per distinct baseline/candidate model (references were checked by :func:`prepare`)."""
    models: dict[tuple, LoadedModel] = {}
    for pair in task_models.values():
        for spec in pair.values():
            if spec.key not in models:
                models[spec.key] = LoadedModel(spec)
    return models


def _collect(tasks: list[Task], task_models: dict[str, dict[str, ModelSpec]], models: dict[tuple, LoadedModel],
             outcomes: dict[str, Outcome], embedded: dict[tuple[str, str], Scores], revisions: bool = True
             ) -> list[TaskRun]:
    """Each task's raw per-role scores: embedding tasks' from ``embedded``, generative ones' from ``outcomes``."""
    runs = []
    for task in tasks:
        name = task.data.spec.name
        pair = task_models[name]
        outcome = outcomes.get(name)
        scores: dict[str, Scores | None] = {}
        for role in ROLES:
            scores[role] = outcome.scores.get(role) if outcome is not None else embedded.get((name, role))
        info: dict[str, Any] = {}
        if task.data.spec.models:
            info["models"] = {r: _model_json(models[pair[r].key], revisions) for r in ROLES}
        if outcome is not None:
            info.update(outcome.info)
        runs.append(TaskRun(task, scores, info, {r: model_setup(models[pair[r].key]) for r in ROLES}))
    return runs


def draw_maps(task_runs: list[TaskRun], points: dict[str, dict[str, np.ndarray]], maps_dir: Path, seed: int,
              log: Log) -> None:
    """The t-SNE maps of tasks with ``map: true`` from their texts' vectors (``points``, rows aligned with the
    task's ``labelled_texts``): a picture for people, so a failure is a note, not an error. A run and a
    merge of shards both draw through here."""
    for run in task_runs:
        spec = run.task.data.spec
        given = points.get(spec.name, {})
        embeddings = {role: given[role] for role in ROLES if role in given}  # the baseline is the reference
        texts, labels = run.task.labelled_texts() if embeddings else ([], [])
        if len(texts) < 3:
            continue
        from gate.embedding_map import write_map

        path = maps_dir / f"{spec.name}.png"
        log(f"task {spec.name}: drawing the embedding map {path}")
        try:
            write_map(path, embeddings, labels, seed=seed, title=f"{spec.name}: texts by label")
        except (OSError, ValueError) as exc:
            run.task.data.notes.append(f"the embedding map could not be drawn: {exc}")
            continue
        run.info["map"] = f"{maps_dir.name}/{path.name}"


def derive(task_runs: list[TaskRun], seed: int, resamples: int
           ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Every metric and its paired statistics, the task records and the per-example rows, from raw scores."""
    metrics: dict[str, dict[str, Any]] = {}
    task_info: dict[str, dict[str, Any]] = {}
    examples: list[dict[str, Any]] = []
    for run in task_runs:
        task, scores = run.task, run.scores
        name = task.data.spec.name
        values = {role: ({m.name: m.compute(scores[role].arrays) for m in task.metrics} if scores[role] else {})
                  for role in ROLES}
        scored = next((scores[r] for r in ROLES if scores[r] is not None), None)
        for m in task.metrics:
            mid = f"{name}/{m.name}"
            b, c = _metric_value(values["baseline"].get(m.name)), _metric_value(values["candidate"].get(m.name))
            entry = metrics[mid] = {
                "baseline": b, "candidate": c,
                "delta": None if b is None or c is None else c - b,
                "higher_is_better": m.higher_is_better,
                "n": m.count(scored.arrays) if m.count and scored else task.data.n,
            }
            if b is None or c is None:
                entry.update(unavailable("a model's value is missing or undefined"))
                continue
            stats = compare_metric(m, mid, scores["baseline"].arrays, scores["candidate"].arrays, seed=seed,
                                   resamples=resamples)
            if m.mean is not None:  # a mean over the examples both models have a value for
                entry["n"] = stats["n_paired"]
            del stats["n_paired"]
            entry.update(stats)
        files = task.data.data_sha256
        combined = hashlib.sha256("".join(f"{k}={files[k]};" for k in sorted(files)).encode()).hexdigest()
        info: dict[str, Any] = {"type": task.data.spec.type, "group": task.data.spec.group, "n": task.data.n,
                                "data_sha256": combined, "data_files": files}
        if task.example_score is not None:
            key, higher = task.example_score
            info["example_score"] = {"key": key, "higher_is_better": higher}
        if "models" in run.info:
            info["models"] = run.info["models"]
        if task.data.notes:
            info["notes"] = task.data.notes
        info.update({k: v for k, v in run.info.items() if k != "models"})
        task_info[name] = info
        examples.extend(_examples(task, scores))
    return metrics, task_info, examples


def model_setup(model: LoadedModel) -> dict[str, Any]:
    """The options that change a model's outputs and its variant (``None`` when it was never loaded here)."""
    return {"options": model.output_options,
            "variant": model.variant if model.fingerprint is not None else None,
            "loaded": model.fingerprint is not None}


def _model_json(model: LoadedModel, revisions: bool = True) -> dict[str, Any]:
    """A model as results.json records it; a Hub model also with the commit it was resolved to (``revision``)
    and what was asked for (``requested_revision``: a branch, tag or commit; null for the default branch)."""
    return {"spec": model.spec.spec, "fingerprint": model.fingerprint,
            **(hub_record(model.spec) if revisions else {})}


_SKIP = object()


def _example_value(value: np.ndarray) -> Any:
    """One example's value: a scalar as is, repeats averaged over their samples, statistics vectors left out."""
    if value.ndim == 0:
        return _metric_value(float(value))
    if value.ndim == 1:
        finite = value[np.isfinite(value)]
        return float(finite.mean()) if finite.size else None
    return _SKIP


def _examples(task: Task, scores: dict[str, Scores | None]) -> list[dict[str, Any]]:
    whole_set = getattr(task, "example_values", None)
    hidden = getattr(task, "hidden_arrays", frozenset({"category"}))
    derived = {role: whole_set(s.arrays) for role, s in scores.items() if s is not None} if whole_set else {}
    rows = []
    for i, ex_id in enumerate(task.data.example_ids):
        row: dict[str, Any] = {"task": task.data.spec.name, "id": ex_id, "text": task.data.example_text[i]}
        for role, s in scores.items():
            if s is None:
                row[role] = None
                continue
            values: dict[str, Any] = {}
            for key, array in s.arrays.items():
                if key in hidden:
                    continue
                value = _example_value(np.asarray(array[i], dtype=np.float64))
                if value is not _SKIP:
                    values[key] = value
            if s.extras is not None:
                values.update(s.extras[i])
            for key, array in derived.get(role, {}).items():
                values[key] = _metric_value(float(array[i]))
            row[role] = values
        rows.append(row)
    return rows
