"""Run a suite: encode every unique text once per model, score every task, apply the rules.

The order is chosen to fail fast and cheaply: model references and every data file
are checked (bad input, exit 2) before any model is loaded. A model that fails to
load or encode does not stop the run: its tasks get no values, the failure is
recorded in ``errors`` and the verdict is ``error`` (exit 3), never ``pass``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import gate
from gate.cache import EmbeddingCache
from gate.errors import EvaluationError
from gate.providers import Embedder, Loader, check_model, load_embedder
from gate.suite import ROLES, ModelSpec, Suite
from gate.tasks import Scores, Task, load_task
from gate.thresholds import Rule, judge

Log = Callable[[str], None]


class EmbeddingTable:
    """Normalized embeddings of unique texts, looked up by text."""

    def __init__(self, texts: list[str], matrix: np.ndarray):
        self.index = {t: i for i, t in enumerate(texts)}
        self.matrix = matrix

    def __call__(self, texts: list[str]) -> np.ndarray:
        idx = np.fromiter((self.index[t] for t in texts), dtype=np.int64, count=len(texts))
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
            return self.matrix[idx[0]:idx[-1] + 1]  # a view: no copy of a big corpus
        return self.matrix[idx]


def normalize(matrix: np.ndarray) -> np.ndarray:
    """L2-normalize rows in place (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


@dataclass
class LoadedModel:
    spec: ModelSpec
    fingerprint: str | None = None
    table: EmbeddingTable | None = None

    @property
    def cache_key(self) -> str:
        """Fingerprint plus every option that changes the vectors (all but batch_size), for the cache."""
        options = {k: v for k, v in self.spec.options if k != "batch_size"}
        return f"{self.spec.provider}|{self.fingerprint}|{json.dumps(options, sort_keys=True)}"


@dataclass
class RunOutput:
    results: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)


def _encode(spec: ModelSpec, embedder: Embedder, cache_key: str, texts: list[str], cache: EmbeddingCache | None,
            log: Log, show_progress: bool) -> np.ndarray:
    """Normalized embeddings of ``texts``: cached vectors where valid, the model for the rest."""
    cached = cache.get(cache_key, texts) if cache else {}
    missing = [i for i in range(len(texts)) if i not in cached]
    if cache:
        log(f"  cache: {len(cached)} of {len(texts)} texts found"
            + (f", {cache.corrupt} corrupt entries ignored" if cache.corrupt else ""))
    start = time.perf_counter()
    fresh = embedder.encode([texts[i] for i in missing], show_progress=show_progress) if missing else None
    if missing:
        took = time.perf_counter() - start
        log(f"  encoded {len(missing):,} texts in {took:.1f} s ({len(missing) / max(took, 1e-9):,.0f}/s)")
        if fresh.shape[0] != len(missing):
            raise EvaluationError(f"model {spec.spec} returned {fresh.shape[0]} vectors for {len(missing)} texts")
        if cache:
            cache.put(cache_key, [texts[i] for i in missing], fresh)
    dim = fresh.shape[1] if fresh is not None else len(next(iter(cached.values())))
    matrix = np.empty((len(texts), dim), dtype=np.float32)
    if fresh is not None:
        matrix[missing] = fresh
    for i, vec in cached.items():
        matrix[i] = vec
    if not np.isfinite(matrix).all():
        raise EvaluationError(f"model {spec.spec} produced NaN or infinite embeddings")
    return normalize(matrix)


def _metric_value(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def run_suite(suite: Suite, *, overrides: dict[str, ModelSpec] | None = None, rules: list[Rule] | None = None,
              seed: int | None = None, loader: Loader = load_embedder, cache: EmbeddingCache | None = None,
              log: Log = lambda msg: None, show_progress: bool = False, thresholds_sha256: str | None = None
              ) -> RunOutput:
    """Evaluate the suite and decide. Bad input raises before any model loads; model failures are recorded."""
    task_models = {t.name: suite.resolved_models(t, overrides) for t in suite.tasks}
    models = _check_models(task_models)
    tasks: list[Task] = []
    for t in suite.tasks:
        log(f"reading task {t.name} ({t.type})")
        tasks.append(load_task(t))
    errors = _encode_all(models, tasks, task_models, loader, cache, log, show_progress)
    metrics, task_info, examples = _score_all(tasks, task_models, models)
    rule_results, verdict, reason = judge(rules or [], metrics, task_info, errors)
    first = task_models[suite.tasks[0].name]
    top_models = {}
    for role in ROLES:
        spec = (overrides or {}).get(role) or suite.models.get(role) or first[role]
        loaded = models.get(spec.key)
        top_models[role] = _model_json(loaded) if loaded else {"spec": spec.spec, "fingerprint": None}
    results = {
        "schema_version": 1,
        "suite": suite.name,
        "verdict": verdict,
        "reason": reason,
        "gate_version": gate.__version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "thresholds": thresholds_sha256,
        "models": top_models,
        "tasks": task_info,
        "metrics": metrics,
        "rules": [r.to_json() for r in rule_results],
        "errors": errors,
    }
    return RunOutput(results, examples)


def _check_models(task_models: dict[str, dict[str, ModelSpec]]) -> dict[tuple, LoadedModel]:
    """One entry per distinct model; a bad reference is bad input before anything loads."""
    models: dict[tuple, LoadedModel] = {}
    for pair in task_models.values():
        for spec in pair.values():
            if spec.key not in models:
                check_model(spec)
                models[spec.key] = LoadedModel(spec)
    return models


def _encode_all(models: dict[tuple, LoadedModel], tasks: list[Task], task_models: dict[str, dict[str, ModelSpec]],
                loader: Loader, cache: EmbeddingCache | None, log: Log, show_progress: bool) -> list[str]:
    """Each distinct model embeds the union of its tasks' texts, once. Returns the errors met."""
    texts_of: dict[tuple, dict[str, None]] = {key: {} for key in models}
    for task in tasks:
        for spec in task_models[task.data.spec.name].values():
            texts_of[spec.key].update(dict.fromkeys(task.texts()))
    errors: list[str] = []
    for key, model in models.items():
        texts = list(texts_of[key])
        roles = sorted({r for pair in task_models.values() for r, s in pair.items() if s.key == key})
        log(f"{'/'.join(roles)} model {model.spec.spec}: loading")
        try:
            embedder = loader(model.spec)
            model.fingerprint = embedder.fingerprint()
            log(f"  {len(texts):,} unique texts to embed")
            model.table = EmbeddingTable(texts, _encode(model.spec, embedder, model.cache_key, texts, cache, log,
                                                        show_progress))
        except EvaluationError as exc:
            errors.append(str(exc))
            log(f"  error: {exc}")
    return errors


def _score_all(tasks: list[Task], task_models: dict[str, dict[str, ModelSpec]], models: dict[tuple, LoadedModel]
               ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Raw scores per task and role, every metric derived from them, and the per-example rows."""
    metrics: dict[str, dict[str, Any]] = {}
    task_info: dict[str, dict[str, Any]] = {}
    examples: list[dict[str, Any]] = []
    for task in tasks:
        name = task.data.spec.name
        pair = task_models[name]
        scores: dict[str, Scores | None] = {}
        values: dict[str, dict[str, float]] = {}
        for role in ROLES:
            table = models[pair[role].key].table
            scores[role] = task.score(table) if table is not None else None
            values[role] = {m.name: m.compute(scores[role].arrays) for m in task.metrics} if scores[role] else {}
        for m in task.metrics:
            b, c = _metric_value(values["baseline"].get(m.name)), _metric_value(values["candidate"].get(m.name))
            metrics[f"{name}/{m.name}"] = {
                "baseline": b, "candidate": c,
                "delta": None if b is None or c is None else c - b,
                "higher_is_better": m.higher_is_better, "n": task.data.n,
            }
        files = task.data.data_sha256
        combined = hashlib.sha256("".join(f"{k}={files[k]};" for k in sorted(files)).encode()).hexdigest()
        info: dict[str, Any] = {"type": task.data.spec.type, "group": task.data.spec.group, "n": task.data.n,
                                "data_sha256": combined, "data_files": files}
        if task.data.spec.models:
            info["models"] = {r: _model_json(models[pair[r].key]) for r in ROLES}
        if task.data.notes:
            info["notes"] = task.data.notes
        task_info[name] = info
        examples.extend(_examples(task, scores))
    return metrics, task_info, examples


def _model_json(model: LoadedModel) -> dict[str, Any]:
    return {"spec": model.spec.spec, "fingerprint": model.fingerprint}


def _examples(task: Task, scores: dict[str, Scores | None]) -> list[dict[str, Any]]:
    rows = []
    for i, ex_id in enumerate(task.data.example_ids):
        row: dict[str, Any] = {"task": task.data.spec.name, "id": ex_id, "text": task.data.example_text[i]}
        for role, s in scores.items():
            if s is None:
                row[role] = None
                continue
            values: dict[str, Any] = {k: _metric_value(float(v[i])) for k, v in s.arrays.items()}
            if s.extras is not None:
                values.update(s.extras[i])
            row[role] = values
        rows.append(row)
    return rows
