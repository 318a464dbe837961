"""The embedding runtime: each distinct model embeds the union of its tasks' texts once, then scores them.

Texts are encoded once per model (a text shared by two tasks, or repeated in one, costs one
vector), from the persistent cache where it holds them; a model's vectors are normalized once,
checked (NaN, infinite or all-zero vectors are an error: a collapsed model must never look
aligned), handed to its tasks as an :class:`EmbeddingTable` and dropped before the next model
loads, so the peak is one model's matrix. Endpoint embeddings are charged to the run budget
(their estimate) before they are requested.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gate.budget import Budget
from gate.cache import EmbeddingCache
from gate.errors import EvaluationError
from gate.llm import Pricing, estimated_tokens
from gate.providers import Embedder, Loader
from gate.suite import ModelSpec
from gate.tasks import Scores, Task

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




@dataclass
class LoadedModel:
    """A model of the run (either runtime's) as results.json and the caches know it."""

    spec: ModelSpec
    fingerprint: str | None = None
    #: what else changes the vectors, as the embedder says (``float16`` on a GPU with ``dtype: auto``)
    variant: str | None = None

    @property
    def output_options(self) -> dict[str, Any]:
        """The options that change what the model returns (all but batch_size, device and the like)."""
        return self.spec.output_options

    @property
    def cache_key(self) -> str:
        """Fingerprint, the options that change the vectors and the embedder's variant, for the cache."""
        key = f"{self.spec.provider}|{self.fingerprint}|{json.dumps(self.output_options, sort_keys=True)}"
        return f"{key}|{self.variant}" if self.variant else key


def encode(spec: ModelSpec, embedder: Embedder, cache_key: str, texts: list[str], cache: EmbeddingCache | None,
           log: Log, show_progress: bool, budget: Budget | None = None) -> np.ndarray:
    """Normalized embeddings of ``texts``: cached vectors where valid, the model for the rest.

    One matrix is allocated, by the cache lookup or by the model: a big corpus costs about its
    size (cached rows are written into it directly; when nothing is cached it is the model's output)."""
    matrix, found = cache.lookup(cache_key, texts) if cache else (None, np.zeros(len(texts), dtype=bool))
    missing = np.flatnonzero(~found)
    if cache:
        log(f"  cache: {int(found.sum())} of {len(texts)} texts found"
            + (f", {cache.corrupt} corrupt entries ignored" if cache.corrupt else ""))
    if len(missing):
        _charge(spec, budget, [texts[i] for i in missing])
        start = time.perf_counter()
        fresh = embedder.encode([texts[i] for i in missing], show_progress=show_progress)
        took = time.perf_counter() - start
        log(f"  encoded {len(missing):,} texts in {took:.1f} s ({len(missing) / max(took, 1e-9):,.0f}/s)")
        if fresh.shape[0] != len(missing):
            raise EvaluationError(f"model {spec.spec} returned {fresh.shape[0]} vectors for {len(missing)} texts")
        # checked before the cache: a bad vector, or one of another size than the cached ones, is never stored
        check_vectors(spec, fresh, missing, texts)
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
        check_vectors(spec, matrix, np.arange(len(texts)), texts)
    return normalize(matrix)


def check_vectors(spec: ModelSpec, vectors: np.ndarray, positions: np.ndarray, texts: list[str],
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


def _charge(spec: ModelSpec, budget: Budget | None, texts: list[str]) -> None:
    """An endpoint's embeddings of ``texts`` charged to the run budget (their estimate) before they are asked for."""
    if budget is None or spec.provider != "openai":
        return
    pricing = Pricing.declared(spec)
    tokens = sum(estimated_tokens(len(t)) for t in texts)
    if pricing is not None and not budget.charge(pricing.cost(tokens, 0), f"embedding {len(texts):,} texts"):
        raise EvaluationError(f"model {spec.spec}: {budget.stopped}")


def embed_and_score(models: dict[tuple, LoadedModel], tasks: list[Task],
                    task_models: dict[str, dict[str, ModelSpec]], loader: Loader, cache: EmbeddingCache | None,
                    log: Log, show_progress: bool, maps: bool, budget: Budget | None = None
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
            table = EmbeddingTable(index, encode(model.spec, embedder, model.cache_key, texts, cache, log,
                                                 show_progress, budget))
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
