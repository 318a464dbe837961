"""``geometry``: alignment and uniformity of the embedding space (Wang & Isola, ICML 2020).

Files: ``pairs``, positive pairs ``{"text_a": str, "text_b": str}`` (a ``label``, if a row carries one,
must be ``similar``: these are positives only), and optionally ``texts``, a sample ``{"text": str}``
of the inputs the model will see; without ``texts`` the sample is the distinct texts of the pairs.
Duplicate texts are dropped (a text paired with itself would count as a collapsed pair), and a
sample of more than ``max_texts`` (default 1000) is cut to a seeded random ``max_texts``, in file order.

Metrics (on unit vectors f(x); ``alpha`` and ``t`` default to 2, as in the paper):

* ``alignment`` = mean over the positive pairs of ||f(x) - f(y)||^alpha; lower is better;
* ``uniformity`` = log of the mean over all distinct pairs i < j of the text sample of
  exp(-t ||f(x_i) - f(x_j)||^2); lower is better (0 when every text has the same embedding; about
  -4 for t = 2 when the embeddings are spread uniformly over a high-dimensional sphere);
* ``mean_cosine`` = the mean cosine over the same pairs of texts; lower is better (a space whose
  embeddings all point one way has a mean cosine near 1);
* ``collapsed`` = 1 when ``mean_cosine`` >= ``collapse_cosine`` (default 0.9), else 0; lower is better,
  so a rule ``{"metric": "*/collapsed", "max": 0}`` blocks a collapsing candidate. (0.9 is far above
  the mean cosine of unrelated sentences in usual sentence embedders, 0.0-0.3 for MiniLM/mpnet-style
  models and about 0.7 for E5-style ones, and means an average squared distance between two random
  texts of at most 0.2 of its possible 4.)

Every example is either a positive pair (``kind`` 0) or a text of the sample (``kind`` 1); each metric
reads the examples of its kind, as a per-category slice reads its category. Alignment is a mean of one
value per pair. Uniformity and the mean cosine are means over pairs of texts (U-statistics), not over
texts: a text's value would depend on every other text, so the per-text arrays hold the jackknife
pseudo-values ``n U - (n - 1) U_(-i)`` of the pair mean U. Their mean is U exactly, and resampling
them gives the U-statistic's standard error (resampling each text's mean kernel to the others would
give half of it). So the paired bootstrap and swap tests work on one number per text: the two
models' spaces are never mixed, and models of different dimensions compare. The task is not
shardable: the pair mean needs every text of the sample at once.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from gate.data import Column, read_table
from gate.errors import BadInput
from gate.metrics import Arrays, MetricDef, mean_of
from gate.suite import TaskSpec
from gate.tasks import Embed, Scores, TaskData

PAIR, TEXT = 0, 1
DEFAULT_T = 2.0
DEFAULT_ALPHA = 2.0
DEFAULT_MAX_TEXTS = 1000
DEFAULT_COLLAPSE_COSINE = 0.9
MIN_TEXTS = 3
SAMPLE_SEED = 0


# ----------------------------------------------------------------------------- metric functions


def alignment_values(a: np.ndarray, b: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """||a_i - b_i||^alpha for each row of two arrays of unit vectors."""
    sq = np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=1)
    return np.power(sq, alpha / 2.0)


def pair_kernels(x: np.ndarray, t: float = DEFAULT_T) -> tuple[np.ndarray, np.ndarray]:
    """(exp(-t ||x_i - x_j||^2), cos(x_i, x_j)) for every pair of rows of unit vectors; the diagonal is 0."""
    x = np.asarray(x, dtype=np.float64)
    cos = x @ x.T
    sq = np.clip(2.0 - 2.0 * cos, 0.0, None)  # ||a - b||^2 = 2 - 2 cos for unit vectors
    gauss = np.exp(-t * sq)
    np.fill_diagonal(gauss, 0.0)
    np.fill_diagonal(cos, 0.0)
    return gauss, cos


def pseudo_values(kernel: np.ndarray) -> np.ndarray:
    """Jackknife pseudo-values of the mean of a symmetric kernel over the distinct pairs of n >= 3 items.

    With S the sum over pairs i < j, U = S / C(n, 2) and U_(-i) the same mean without item i,
    ``n U - (n - 1) U_(-i)``; their mean is exactly U. ``kernel``'s diagonal must be 0.
    """
    n = len(kernel)
    row = kernel.sum(axis=1)
    total = row.sum() / 2.0
    u = total / (n * (n - 1) / 2.0)
    u_without = (total - row) / ((n - 1) * (n - 2) / 2.0)
    return n * u - (n - 1) * u_without


def uniformity(x: np.ndarray, t: float = DEFAULT_T) -> float:
    """Wang & Isola's uniformity of a sample of unit vectors: log mean over i < j of exp(-t ||x_i - x_j||^2)."""
    gauss, _ = pair_kernels(x, t)
    n = len(gauss)
    return float(np.log(gauss.sum() / (n * (n - 1))))


def _texts(arrays: Arrays) -> np.ndarray:
    return np.asarray(arrays["kind"]) == TEXT


def _pairs(arrays: Arrays) -> np.ndarray:
    return np.asarray(arrays["kind"]) == PAIR


def _text_mean(arrays: Arrays, key: str) -> np.ndarray | float:
    """Mean of ``arrays[key]`` over the text rows, along the last axis (resamples lead); NaN without texts."""
    keep = _texts(arrays)
    values = np.where(keep, np.asarray(arrays[key], dtype=np.float64), 0.0)
    count = keep.sum(axis=-1).astype(np.float64)
    out = np.divide(values.sum(axis=-1), count, out=np.full(np.shape(count), np.nan), where=count > 0)
    return float(out) if np.ndim(out) == 0 else out


def _log(mean: np.ndarray | float) -> np.ndarray | float:
    """log of a pseudo-value mean; NaN where a resample's mean is not positive (possible on tiny samples)."""
    m = np.asarray(mean, dtype=np.float64)
    out = np.log(m, out=np.full(m.shape, np.nan), where=m > 0)
    return float(out) if out.ndim == 0 else out


def _collapsed(mean_cosine: np.ndarray | float, threshold: float) -> np.ndarray | float:
    m = np.asarray(mean_cosine, dtype=np.float64)
    out = np.where(np.isnan(m), np.nan, (m >= threshold).astype(np.float64))
    return float(out) if out.ndim == 0 else out


def _count(mask: Callable[[Arrays], np.ndarray]) -> Callable[[Arrays], int]:
    return lambda arrays: int(np.sum(mask(arrays)))


def geometry_metrics(collapse_cosine: float = DEFAULT_COLLAPSE_COSINE, alpha: float = DEFAULT_ALPHA,
                     t: float = DEFAULT_T) -> list[MetricDef]:
    def uni(arrays: Arrays):
        return _log(_text_mean(arrays, "uniformity_pv"))

    def collapsed(arrays: Arrays):
        return _collapsed(_text_mean(arrays, "cosine_pv"), collapse_cosine)

    return [
        MetricDef("alignment", False, mean_of("alignment").restricted(_pairs),
                  f"mean ||f(x) - f(y)||^{alpha:g} over the positive pairs (unit vectors; Wang & Isola 2020)",
                  count=_count(_pairs)),
        MetricDef("uniformity", False, lambda a: float(uni(a)),
                  f"log mean exp(-{t:g} ||f(x) - f(y)||^2) over the pairs of the text sample (Wang & Isola 2020)",
                  count=_count(_texts), batch=lambda a: np.asarray(uni(a), dtype=np.float64)),
        MetricDef("mean_cosine", False, mean_of("cosine_pv").restricted(_texts),
                  "mean cosine over the pairs of the text sample (near 1: every embedding points one way)",
                  count=_count(_texts)),
        MetricDef("collapsed", False, lambda a: float(collapsed(a)),
                  f"1 when the text sample's mean cosine is at least {collapse_cosine:g} (a collapsing space), else 0",
                  count=_count(_texts), batch=lambda a: np.asarray(collapsed(a), dtype=np.float64)),
    ]


# ----------------------------------------------------------------------------- the task


class GeometryTask:
    shardable = False
    example_score = ("alignment", False)
    hidden_arrays = frozenset({"kind", "uniformity_pv", "cosine_pv"})

    def __init__(self, data: TaskData, pairs_a: list[str], pairs_b: list[str], sample: list[str],
                 t: float, alpha: float, collapse_cosine: float):
        self.data, self.pairs_a, self.pairs_b, self.sample = data, pairs_a, pairs_b, sample
        self.t, self.alpha, self.collapse_cosine = t, alpha, collapse_cosine
        self.metrics = geometry_metrics(collapse_cosine, alpha, t)

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (see :mod:`gate.catalogue`)."""
        return [m.name for m in geometry_metrics()], []

    @classmethod
    def load(cls, spec: TaskSpec) -> "GeometryTask":
        fields = spec.fields
        t = _number(spec, "t", DEFAULT_T, lambda v: v > 0, "a number > 0")
        alpha = _number(spec, "alpha", DEFAULT_ALPHA, lambda v: v > 0, "a number > 0")
        threshold = _number(spec, "collapse_cosine", DEFAULT_COLLAPSE_COSINE, lambda v: -1 < v <= 1,
                            "a number in (-1, 1]")
        max_texts = fields.get("max_texts", DEFAULT_MAX_TEXTS)
        if isinstance(max_texts, bool) or not isinstance(max_texts, int) or max_texts < MIN_TEXTS:
            raise spec.error("max_texts", f"expected an integer >= {MIN_TEXTS}, got {max_texts!r}")
        pt = read_table(spec.path("pairs"), [Column("text_a", "text"), Column("text_b", "text"),
                                             Column("label", "optional_text")], "positive pairs file")
        for row, line in zip(pt.rows, pt.lines):
            if row["label"] not in ("", "similar"):
                raise BadInput(f"field 'label': {row['label']!r} in a file of positive pairs; expected 'similar' "
                               f"or no label (alignment is measured on positive pairs only)", pt.path, str(line))
        sha = {"pairs": pt.sha256}
        candidates: list[tuple[str, str]] = []  # (text, example id)
        if "texts" in fields:
            tt = read_table(spec.path("texts"), [Column("text", "text")], "texts file")
            sha["texts"] = tt.sha256
            candidates = [(r["text"], f"text:{line}") for r, line in zip(tt.rows, tt.lines)]
            origin = tt.path.name
        else:
            for r, line in zip(pt.rows, pt.lines):
                candidates += [(r["text_a"], f"text:{line}a"), (r["text_b"], f"text:{line}b")]
            origin = f"the pairs of {pt.path.name}"
        seen: dict[str, str] = {}
        for text, ex_id in candidates:
            seen.setdefault(text, ex_id)
        notes = []
        if "texts" in fields and len(seen) < len(candidates):
            notes.append(f"{len(candidates) - len(seen)} duplicate texts of {origin} were dropped from the sample")
        if len(seen) < MIN_TEXTS:
            raise BadInput(f"{len(seen)} distinct texts in {origin}; uniformity needs at least {MIN_TEXTS}",
                           tt.path if "texts" in fields else pt.path)
        sample = list(seen.items())
        if len(sample) > max_texts:
            keep = np.sort(np.random.default_rng(SAMPLE_SEED).choice(len(sample), max_texts, replace=False))
            notes.append(f"uniformity and mean_cosine use a seeded sample of {max_texts} of the {len(sample)} "
                         f"distinct texts of {origin} (max_texts)")
            sample = [sample[i] for i in keep]
        data = TaskData(
            spec=spec, n=len(pt) + len(sample), data_sha256=sha,
            example_ids=[f"pair:{line}" for line in pt.lines] + [ex_id for _, ex_id in sample],
            example_text=[{"text_a": r["text_a"], "text_b": r["text_b"]} for r in pt.rows]
            + [{"text": text} for text, _ in sample],
            notes=notes,
        )
        return cls(data, [r["text_a"] for r in pt.rows], [r["text_b"] for r in pt.rows],
                   [text for text, _ in sample], t, alpha, threshold)

    def texts(self) -> list[str]:
        return self.pairs_a + self.pairs_b + self.sample

    def score(self, embed: Embed) -> Scores:
        n_pairs, n_texts = len(self.pairs_a), len(self.sample)
        align = alignment_values(embed(self.pairs_a), embed(self.pairs_b), self.alpha)
        gauss, cos = pair_kernels(embed(self.sample), self.t)
        nan_pairs = np.full(n_pairs, np.nan)
        arrays = {
            "kind": np.concatenate([np.full(n_pairs, PAIR), np.full(n_texts, TEXT)]).astype(np.int64),
            "alignment": np.concatenate([align, np.full(n_texts, np.nan)]),
            "uniformity_pv": np.concatenate([nan_pairs, pseudo_values(gauss)]),
            "cosine_pv": np.concatenate([nan_pairs, pseudo_values(cos)]),
        }
        to_others = cos.sum(axis=1) / (n_texts - 1)
        extras: list[dict[str, Any]] = [{} for _ in range(n_pairs)]
        extras += [{"mean_cosine_to_others": float(c)} for c in to_others]
        return Scores(arrays, extras)


def _number(spec: TaskSpec, key: str, default: float, ok: Callable[[float], bool], expected: str) -> float:
    value = spec.fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or not ok(value):
        raise spec.error(key, f"expected {expected}, got {value!r}")
    return float(value)
