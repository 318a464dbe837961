"""Run a suite: embedding tasks, then generative tasks, then one path from raw scores to the verdict.

The order is chosen to fail fast and cheaply: model references, API-key variables
and every data file are checked (bad input, exit 2) before any model is loaded or
any request is sent. Embedding tasks encode every unique text once per model;
generative tasks get their responses through one :class:`~gate.dispatch.Dispatcher`
(response cache, bounded concurrency, retries). A model that fails to load, encode
or answer does not stop the run: its tasks get no values, the failure is recorded
in ``errors`` and the verdict is ``error`` (exit 3), never ``pass``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

import gate
from gate.cache import EmbeddingCache, ResponseCache
from gate.compare import CONFIDENCE, DEFAULT_RESAMPLES, compare_metric, unavailable
from gate.dispatch import Dispatcher, RetryPolicy, Usage, concurrency_limit
from gate.errors import BadInput, EvaluationError
from gate.hub import Resolver
from gate.hub import record as hub_record
from gate.llm import ChatRequest, ChatResponse, Generator, Pricing, PromptLogprobs
from gate.providers import CAPABILITIES, Embedder, GeneratorLoader, Loader, check_model, load_embedder, load_generator
from gate.suite import ROLES, ModelSpec, Suite
from gate.tasks import Scores, Task, load_task
from gate.tasks.generative import Outcome
from gate.thresholds import Rule, Thresholds, judge

Log = Callable[[str], None]


class EmbeddingTable:
    """Normalized embeddings of unique texts, looked up by text.

    ``texts`` is the unique texts in the matrix's row order, or already their index (text -> row):
    a million-text corpus then needs no second dictionary."""

    def __init__(self, texts: list[str] | dict[str, int], matrix: np.ndarray):
        self.index = texts if isinstance(texts, dict) else {t: i for i, t in enumerate(texts)}
        self.matrix = matrix

    def __call__(self, texts: list[str]) -> np.ndarray:
        matrix, idx = self.rows(texts)
        return matrix if idx is None else matrix[idx]

    def rows(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(a view of the texts' rows, None)`` when they are one run of the matrix in order, else
        ``(the whole matrix, their row indices)``: a caller that can gather (retrieval's top-k) then
        never copies a big corpus."""
        idx = np.fromiter((self.index[t] for t in texts), dtype=np.int64, count=len(texts))
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
            return self.matrix[idx[0]:idx[-1] + 1], None  # a view: no copy of a big corpus
        return self.matrix, idx


def normalize(matrix: np.ndarray, rows: int = 65536) -> np.ndarray:
    """L2-normalize rows in place (zero rows stay zero), a block of rows at a time: no full-size temporary."""
    for start in range(0, matrix.shape[0], rows):
        block = matrix[start:start + rows]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        np.divide(block, norms, out=block, where=norms > 0)
    return matrix


#: options that change how vectors are fetched, never the vectors themselves (kept out of the cache key)
_NOT_IN_VECTORS = {"batch_size", "device", "timeout", "max_retries", "concurrency", "pricing", "api_key_env"}


@dataclass
class LoadedModel:
    spec: ModelSpec
    fingerprint: str | None = None
    #: what else changes the vectors, as the embedder says (``float16`` on a GPU with ``dtype: auto``)
    variant: str | None = None

    @property
    def output_options(self) -> dict[str, Any]:
        """The options that change what the model returns (all but batch_size, device and the like)."""
        return {k: v for k, v in self.spec.options if k not in _NOT_IN_VECTORS}

    @property
    def cache_key(self) -> str:
        """Fingerprint, the options that change the vectors and the embedder's variant, for the cache."""
        key = f"{self.spec.provider}|{self.fingerprint}|{json.dumps(self.output_options, sort_keys=True)}"
        return f"{key}|{self.variant}" if self.variant else key


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


def _encode(spec: ModelSpec, embedder: Embedder, cache_key: str, texts: list[str], cache: EmbeddingCache | None,
            log: Log, show_progress: bool) -> np.ndarray:
    """Normalized embeddings of ``texts``: cached vectors where valid, the model for the rest.

    One matrix is allocated, by the cache lookup or by the model: a big corpus costs about its
    size (cached rows are written into it directly; when nothing is cached it is the model's output)."""
    matrix, found = cache.lookup(cache_key, texts) if cache else (None, np.zeros(len(texts), dtype=bool))
    missing = np.flatnonzero(~found)
    if cache:
        log(f"  cache: {int(found.sum())} of {len(texts)} texts found"
            + (f", {cache.corrupt} corrupt entries ignored" if cache.corrupt else ""))
    if len(missing):
        start = time.perf_counter()
        fresh = embedder.encode([texts[i] for i in missing], show_progress=show_progress)
        took = time.perf_counter() - start
        log(f"  encoded {len(missing):,} texts in {took:.1f} s ({len(missing) / max(took, 1e-9):,.0f}/s)")
        if fresh.shape[0] != len(missing):
            raise EvaluationError(f"model {spec.spec} returned {fresh.shape[0]} vectors for {len(missing)} texts")
        # checked before the cache: a bad vector, or one of another size than the cached ones, is never stored
        _check_vectors(spec, fresh, missing, texts)
        if matrix is not None and (fresh.ndim != 2 or fresh.shape[1] != matrix.shape[1]):
            raise EvaluationError(f"model {spec.spec} returned {fresh.shape[-1]}-dimensional vectors, and its "
                                  f"cached ones have {matrix.shape[1]}")
        if cache:
            cache.put(cache_key, [texts[i] for i in missing], fresh)
        if matrix is None:  # nothing was cached: the model's output is the matrix, in the same order
            matrix = np.require(fresh, dtype=np.float32, requirements=["C", "W"])
        else:
            matrix[missing] = fresh
        del fresh
    if matrix is None:  # no texts at all
        matrix = np.zeros((0, 0), dtype=np.float32)
    if found.any():  # cached rows (from a file an older gate may have written): the fresh ones are checked
        _check_vectors(spec, matrix, np.arange(len(texts)), texts)
    return normalize(matrix)


def _check_vectors(spec: ModelSpec, vectors: np.ndarray, positions: np.ndarray, texts: list[str],
                   rows: int = 65536) -> None:
    """NaN, infinite or all-zero vectors (row i is the text ``texts[positions[i]]``) are an evaluation error:
    a cosine similarity of them is undefined, and a collapsed model must never look aligned. One pass, a
    block of rows at a time (no full-size temporary)."""
    finite, zero = True, []
    for start in range(0, vectors.shape[0], rows):
        block = vectors[start:start + rows]
        finite = finite and bool(np.isfinite(block).all())
        zero.append(np.flatnonzero(~block.any(axis=1)) + start)
    if not finite:
        raise EvaluationError(f"model {spec.spec} produced NaN or infinite embeddings")
    zeros = np.concatenate(zero) if zero else np.zeros(0, dtype=np.int64)
    if len(zeros):
        raise EvaluationError(f"model {spec.spec} produced {len(zeros):,} all-zero embeddings (the first for "
                              f"{_shown(texts[positions[zeros[0]]])}): cosine similarity is undefined for them")


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _metric_value(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def run_suite(suite: Suite, *, overrides: dict[str, ModelSpec] | None = None,
              rules: Thresholds | list[Rule] | None = None,
              seed: int | None = None, loader: Loader = load_embedder,
              generator_loader: GeneratorLoader = load_generator, cache: EmbeddingCache | None = None,
              responses: ResponseCache | None = None, model_cache_dir: Path | None = None,
              policy: RetryPolicy | None = None, log: Log = lambda msg: None, show_progress: bool = False,
              thresholds_sha256: str | None = None, resamples: int = DEFAULT_RESAMPLES,
              shard: tuple[int, int] | None = None, maps_dir: Path | None = None) -> RunOutput:
    """Evaluate the suite and decide. Bad input raises before any model loads; model failures are recorded.

    With ``shard=(i, n)`` only the i-th of n slices of every task's examples is evaluated (tasks that
    need all their examples at once run whole in shard 1) and the output's ``task_runs`` are what
    ``gate merge`` combines; the results of a shard are not a verdict."""
    # Hub models are resolved and downloaded here, before any model loads (gate.hub)
    task_models, tasks = prepare(suite, overrides, log, hub=Resolver(model_cache_dir, log))
    if shard is not None:
        tasks = shard_tasks(tasks, *shard, log)
    models = _check_models(task_models, tasks)
    errors, embedded, points = _embed_and_score(models, [t for t in tasks if _kind(t) == "embedding"], task_models,
                                                loader, cache, log, show_progress,
                                                maps=maps_dir is not None or shard is not None)
    generative = [t for t in tasks if _kind(t) == "generative"]
    outcomes: dict[str, Outcome] = {}
    if generative:
        runtime = _GenRuntime(Dispatcher(cache=responses, policy=policy or RetryPolicy(), log=log, seed=seed or 0),
                              generator_loader, model_cache_dir, seed, log)
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
    if shard is not None:
        return RunOutput({"suite": suite.name, "models": top_models, "errors": errors, "seed": seed,
                          "resamples": resamples}, [], task_runs, points)
    results, examples = decide_run(suite.name, task_runs, top_models, errors, rules, seed, resamples,
                                   thresholds_sha256, log)
    return RunOutput(results, examples, task_runs)


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
            hub: Resolver | None = None) -> tuple[dict[str, dict[str, ModelSpec]], list[Task]]:
    """Resolve every task's models and read every data file; all bad input surfaces here (exit 2).
    With ``hub``, Hub models are downloaded too (without: ``--dry-run``, nothing is downloaded)."""
    task_models = {t.name: suite.resolved_models(t, overrides) for t in suite.tasks}
    for pair in task_models.values():
        for spec in pair.values():
            check_model(spec, hub=hub)
    tasks: list[Task] = []
    for t in suite.tasks:
        log(f"reading task {t.name} ({t.type})")
        task = load_task(t)
        need = "generate" if _kind(task) == "generative" else "embed"
        for role, spec in task_models[t.name].items():
            _require(spec, need, f"task {t.name!r} ({t.type}) needs a model that can {need}; the {role}")
        for spec in getattr(task, "extra_models", lambda: [])():
            check_model(spec, hub=hub)
            _require(spec, "generate", f"task {t.name!r} ({t.type}) needs a model that can generate; the judge")
        tasks.append(task)
    return task_models, tasks


def _require(spec: ModelSpec, capability: str, what: str) -> None:
    if capability not in CAPABILITIES[spec.provider]:
        able = [p for p, caps in CAPABILITIES.items() if capability in caps]
        raise BadInput(f"{what} {spec.spec} is a {spec.provider} model, which cannot; "
                       f"use a provider that can: {', '.join(able)}", location=spec.origin)


def _kind(task: Task) -> str:
    return getattr(task, "kind", "embedding")


class _GenRuntime:
    """The :class:`~gate.tasks.generative.GenContext` the runner gives generative tasks.

    Each distinct model is loaded once, on first use, and closed at the end; a model
    that fails to load fails every task that needs it (recorded, exit 3).
    """

    def __init__(self, dispatcher: Dispatcher, loader: GeneratorLoader, model_cache_dir: Path | None,
                 seed: int | None, log: Log):
        self.dispatcher, self.loader, self.model_cache_dir, self.seed, self.log = (
            dispatcher, loader, model_cache_dir, seed, log)
        self.loaded: dict[tuple, Generator | EvaluationError] = {}
        self.identities: dict[tuple, str] = {}
        self.usage: dict[str, Usage] = {}

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

    async def chat(self, spec: ModelSpec, requests: Sequence[ChatRequest], *, concurrency: int, label: str,
                   usage_key: str) -> list[ChatResponse]:
        model = self._get(spec)
        self.log(f"{label}: {len(requests)} requests to {spec.spec} "
                 f"(at most {concurrency_limit(model, concurrency)} at once)")
        return await self._counted(usage_key, self.dispatcher.chat(model, requests, concurrency=concurrency,
                                                                   label=label))

    async def prompt_logprobs(self, spec: ModelSpec, texts: Sequence[str], *, concurrency: int, label: str,
                              usage_key: str) -> list[PromptLogprobs]:
        model = self._get(spec)
        self.log(f"{label}: log-probabilities of {len(texts)} texts from {spec.spec}")
        return await self._counted(usage_key, self.dispatcher.prompt_logprobs(model, texts, concurrency=concurrency,
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

    def pricing(self, spec: ModelSpec) -> Pricing | None:
        return self._get(spec).pricing

    def identity(self, spec: ModelSpec) -> str | None:
        return self.identities.get(spec.key)

    async def run_all(self, tasks: list[Task], task_models: dict[str, dict[str, ModelSpec]]) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        try:
            for task in tasks:
                name = task.data.spec.name
                self.usage = {}
                outcome = await task.run(self, task_models[name])
                if self.usage:
                    outcome.info["usage"] = {k: v.to_json() for k, v in self.usage.items()}
                outcomes[name] = outcome
        finally:
            for model in self.loaded.values():
                if not isinstance(model, EvaluationError):
                    await model.aclose()
        return outcomes


def _check_models(task_models: dict[str, dict[str, ModelSpec]], tasks: list[Task]) -> dict[tuple, LoadedModel]:
    """One entry per distinct baseline/candidate model (references were checked by :func:`prepare`)."""
    models: dict[tuple, LoadedModel] = {}
    for pair in task_models.values():
        for spec in pair.values():
            if spec.key not in models:
                models[spec.key] = LoadedModel(spec)
    return models


def _embed_and_score(models: dict[tuple, LoadedModel], tasks: list[Task],
                     task_models: dict[str, dict[str, ModelSpec]], loader: Loader, cache: EmbeddingCache | None,
                     log: Log, show_progress: bool, maps: bool
                     ) -> tuple[list[str], dict[tuple[str, str], Scores], dict[str, dict[str, np.ndarray]]]:
    """Each distinct model embeds the union of its tasks' texts once and scores those tasks right away.

    A model's vectors are dropped before the next model loads, so the peak is one model's table (a
    1 M-document corpus costs one matrix, not one per model). Returns the errors met, the scores by
    ``(task, role)`` and, for tasks with ``map: true``, the map sample's vectors by task and role.
    """
    keys = list(dict.fromkeys(spec.key for task in tasks for spec in task_models[task.data.spec.name].values()))
    errors: list[str] = []
    scores: dict[tuple[str, str], Scores] = {}
    points: dict[str, dict[str, np.ndarray]] = {}
    for key in keys:
        model = models[key]
        # the model's unique texts, first seen first, with their rows: built only now, for this model
        index: dict[str, int] = {}
        for task in tasks:
            if any(spec.key == key for spec in task_models[task.data.spec.name].values()):
                for text in task.texts():
                    index.setdefault(text, len(index))
        texts = list(index)
        roles = sorted({r for pair in task_models.values() for r, s in pair.items() if s.key == key})
        log(f"{'/'.join(roles)} model {model.spec.spec}: loading")
        try:
            embedder = loader(model.spec)
            model.fingerprint = embedder.fingerprint()
            model.variant = getattr(embedder, "cache_variant", lambda: None)()
            log(f"  {len(texts):,} unique texts to embed" + (f" ({model.variant})" if model.variant else ""))
            table = EmbeddingTable(index, _encode(model.spec, embedder, model.cache_key, texts, cache, log,
                                                  show_progress))
        except EvaluationError as exc:
            errors.append(str(exc))
            log(f"  error: {exc}")
            continue
        finally:
            embedder = None  # a loaded model's weights go before the next model's
        del texts, index
        for task in tasks:
            name = task.data.spec.name
            for role, spec in task_models[name].items():
                if spec.key != key:
                    continue
                scores[(name, role)] = task.score(table)
                if maps and task.data.spec.fields.get("map") and hasattr(task, "labelled_texts"):
                    points.setdefault(name, {})[role] = np.array(table(task.labelled_texts()[0]))
        del table
    return errors, scores, points


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
