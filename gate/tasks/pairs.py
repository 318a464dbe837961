"""``pairs``: concept-pair and triplet probes; does the model order similar above dissimilar?

One data file (``data``), JSONL/CSV/TSV, of ONE kind, detected from its first row:

* pair rows ``{"text_a": str, "text_b": str, "label": "similar" | "dissimilar", "category"?: str}``;
* triplet rows ``{"anchor": str, "positive": str, "negative": str, "category"?: str}``.

A row of the other kind, an unknown label or a bad category is bad input naming the
file and line. Extra keys are ignored.

Metrics (all higher is better, all recomputed on any subset or resample of the rows):

* triplets: ``accuracy``, the share of triplets with cos(anchor, positive) > cos(anchor, negative)
  (ties count as wrong), and ``margin``, the mean of cos(anchor, positive) - cos(anchor, negative);
* pairs: ``accuracy``, the share of (similar, dissimilar) pairs of rows in which the similar row has
  the higher cosine (ties count one half): the ROC AUC of the cosine for the label, so no threshold
  has to be chosen; and ``margin``, the mean cosine of the similar rows minus that of the dissimilar
  rows. Both are NaN on a set holding only one label.

When rows carry a ``category`` (1-64 lowercase letters, digits, ``_`` or ``-``, the rule of
generation cases, because it becomes part of a metric id), every metric is also reported per
category: ``accuracy[animals]``, ``margin[animals]``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

from gate.cases import CATEGORY
from gate.data import Column, read_table
from gate.errors import BadInput
from gate.metrics import Arrays, MetricDef, PerExampleMean, mean_of
from gate.suite import TaskSpec
from gate.tasks import Embed, Scores, TaskData, selected

LABELS = {"similar": 1, "dissimilar": 0}
PAIR_FIELDS = ("text_a", "text_b", "label")
TRIPLET_FIELDS = ("anchor", "positive", "negative")
#: every field either kind reads; all optional at read time, so a row of the wrong kind gets a clear message
COLUMNS = [Column(name, "optional_text") for name in PAIR_FIELDS + TRIPLET_FIELDS + ("category",)]

Mask = Callable[[Arrays], np.ndarray]


# ----------------------------------------------------------------------------- metric functions


def auc(cosine: np.ndarray, similar: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray | float:
    """ROC AUC of ``cosine`` for ``similar`` (1) vs dissimilar (0) over the last axis, ties counting 1/2.

    The Mann-Whitney form: (rank sum of the similar rows - n_s (n_s + 1) / 2) / (n_s n_d), with average
    ranks for ties, which is what :func:`sklearn.metrics.roc_auc_score` computes. ``keep`` restricts it to
    some rows (a category): the others are ranked above every kept row, so kept ranks are unchanged.
    Leading axes are resamples (one AUC each). NaN where one label is absent.
    """
    cosine = np.asarray(cosine, dtype=np.float64)
    sim = np.asarray(similar) == 1
    keep = np.ones(cosine.shape, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    ranks = rankdata(np.where(keep, cosine, np.inf), axis=-1)
    pos, neg = sim & keep, ~sim & keep
    n_pos, n_neg = pos.sum(axis=-1).astype(np.float64), neg.sum(axis=-1).astype(np.float64)
    u = np.where(pos, ranks, 0.0).sum(axis=-1) - n_pos * (n_pos + 1) / 2
    return _ratio(u, n_pos * n_neg)


def label_margin(cosine: np.ndarray, similar: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray | float:
    """Mean cosine of the similar rows minus that of the dissimilar rows, over the last axis (NaN when a
    label is absent); ``keep`` restricts it to some rows."""
    cosine = np.asarray(cosine, dtype=np.float64)
    sim = np.asarray(similar) == 1
    keep = np.ones(cosine.shape, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    pos, neg = sim & keep, ~sim & keep
    mean_pos = _ratio(np.where(pos, cosine, 0.0).sum(axis=-1), pos.sum(axis=-1).astype(np.float64))
    mean_neg = _ratio(np.where(neg, cosine, 0.0).sum(axis=-1), neg.sum(axis=-1).astype(np.float64))
    return mean_pos - mean_neg


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray | float:
    """num / den, NaN where den is 0 (no warning); a float for 0-d input."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den != 0)
    return float(out) if out.ndim == 0 else out


def _pair_metric(fn, mask: Mask | None = None) -> tuple[Callable[[Arrays], float], Callable[[Arrays], np.ndarray]]:
    """``compute`` and ``batch`` of a pair metric, optionally restricted to the rows ``mask`` selects."""

    def call(arrays: Arrays):
        return fn(arrays["cosine"], arrays["similar"], None if mask is None else mask(arrays))

    return (lambda arrays: float(call(arrays))), (lambda arrays: np.asarray(call(arrays), dtype=np.float64))


def category_mask(code: int) -> Mask:
    return lambda arrays: np.asarray(arrays["category"]) == code


def category_count(code: int) -> Callable[[Arrays], int]:
    return lambda arrays: int(np.sum(np.asarray(arrays["category"]) == code))


def pair_metrics(mask: Mask | None = None, suffix: str = "", count=None) -> list[MetricDef]:
    acc, acc_rows = _pair_metric(auc, mask)
    mar, mar_rows = _pair_metric(label_margin, mask)
    return [
        MetricDef(f"accuracy{suffix}", True, acc,
                  "share of (similar, dissimilar) pairs whose similar pair has the higher cosine, ties 1/2 "
                  "(ROC AUC)" + _where(suffix), count=count, batch=acc_rows),
        MetricDef(f"margin{suffix}", True, mar,
                  "mean cosine of the similar pairs minus that of the dissimilar pairs" + _where(suffix),
                  count=count, batch=mar_rows),
    ]


def triplet_metrics(mask: Mask | None = None, suffix: str = "", count=None) -> list[MetricDef]:
    acc: PerExampleMean = mean_of("correct")
    mar: PerExampleMean = mean_of("margin")
    if mask is not None:
        acc, mar = acc.restricted(mask), mar.restricted(mask)
    return [
        MetricDef(f"accuracy{suffix}", True, acc,
                  "share of triplets with cos(anchor, positive) > cos(anchor, negative)" + _where(suffix),
                  count=count),
        MetricDef(f"margin{suffix}", True, mar,
                  "mean of cos(anchor, positive) - cos(anchor, negative)" + _where(suffix), count=count),
    ]


def _where(suffix: str) -> str:
    return f" (category {suffix[1:-1]})" if suffix else ""


# ----------------------------------------------------------------------------- the task


class PairsTask:
    """Pairs or triplets of one data file; ``form`` is ``"pairs"`` or ``"triplets"`` (not ``kind``: the runner
    reads a task's ``kind`` to tell generative tasks from embedding ones)."""

    def __init__(self, data: TaskData, form: str, texts: dict[str, list[str]], similar: np.ndarray,
                 category: np.ndarray, categories: list[str]):
        self.data, self.form, self.columns = data, form, texts
        self.similar, self.category, self.categories = similar, category, categories
        base = triplet_metrics if form == "triplets" else pair_metrics
        self.metrics: list[MetricDef] = base()
        for code, label in enumerate(categories):
            if form == "pairs" and len(set(similar[category == code].tolist())) < 2:
                continue  # one label only: the slice is never defined (load() notes it)
            self.metrics += base(category_mask(code), f"[{label}]", category_count(code))
        self.example_score = ("margin", True) if form == "triplets" else ("signed_cosine", True)

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone, and those also reported per category
        (``name[category]``, for the categories its data holds; see :mod:`gate.catalogue`)."""
        names = [m.name for m in pair_metrics()]
        return names, names

    @classmethod
    def load(cls, spec: TaskSpec) -> "PairsTask":
        table = read_table(spec.path("data"), COLUMNS, "pairs file")
        kind = _kind(table.rows[0], table.path, table.lines[0])
        fields = TRIPLET_FIELDS if kind == "triplets" else PAIR_FIELDS[:2]
        other = PAIR_FIELDS if kind == "triplets" else TRIPLET_FIELDS
        texts: dict[str, list[str]] = {f: [] for f in fields}
        similar, cats = [], []
        for row, line in zip(table.rows, table.lines):
            where = (table.path, str(line))
            present = [f for f in other if row[f]]
            if present:
                raise BadInput(f"field {present[0]!r} in a file of {kind} (detected from its first row, line "
                               f"{table.lines[0]}); expected one kind per file: {_shape(kind)}", *where)
            for f in fields:
                if not row[f].strip():
                    raise BadInput(f"missing {f!r}; expected a non-empty string ({_shape(kind)})", *where)
                texts[f].append(row[f])
            if kind == "pairs":
                if not row["label"]:
                    raise BadInput("missing 'label'; expected 'similar' or 'dissimilar'", *where)
                if row["label"] not in LABELS:
                    raise BadInput(f"field 'label': unknown label {row['label']!r}; expected 'similar' or "
                                   f"'dissimilar'", *where)
                similar.append(LABELS[row["label"]])
            category = row["category"]
            if category and not CATEGORY.match(category):
                raise BadInput(f"field 'category': expected 1-64 lowercase letters, digits, '_' or '-' starting "
                               f"with a letter or digit (it becomes part of metric ids like accuracy[category]), "
                               f"got {category!r}", *where)
            cats.append(category)
        if kind == "pairs" and len(set(similar)) < 2:
            only = "similar" if similar[0] else "dissimilar"
            raise BadInput(f"every label is {only!r}; accuracy and margin compare similar with dissimilar pairs, "
                           f"so both labels are needed", table.path)
        categories = sorted({c for c in cats if c})
        code = {c: i for i, c in enumerate(categories)}
        category = np.array([code.get(c, -1) for c in cats], dtype=np.int64)
        notes = []
        if kind == "pairs":
            sim = np.array(similar)
            for c in categories:
                labels = set(sim[category == code[c]].tolist())
                if len(labels) < 2:
                    notes.append(f"category {c!r} has only {'similar' if 1 in labels else 'dissimilar'} pairs, so "
                                 f"it has no accuracy[{c}] or margin[{c}] (they compare the two labels)")
        unlabelled = int(np.sum(category < 0))
        if categories and unlabelled:
            notes.append(f"{unlabelled} of {len(table)} rows have no category (counted only in the overall metrics)")
        data = TaskData(
            spec=spec, n=len(table), data_sha256={"data": table.sha256},
            example_ids=[str(line) for line in table.lines],
            example_text=[{f: texts[f][i] for f in fields} for i in range(len(table))], notes=notes,
        )
        return cls(data, kind, texts, np.array(similar, dtype=np.int64), category, categories)

    def select(self, indices: Sequence[int]) -> "PairsTask":
        """The rows at ``indices``; the category list (and so every category's code) stays whole."""
        per_example = {"category": self.category}
        if self.form == "pairs":
            per_example["similar"] = self.similar
        out = selected(self, indices, **per_example)
        out.columns = {f: [v[i] for i in indices] for f, v in self.columns.items()}
        return out

    def texts(self) -> list[str]:
        return [t for column in self.columns.values() for t in column]

    def score(self, embed: Embed) -> Scores:
        if self.form == "triplets":
            a, p, n = (embed(self.columns[f]) for f in TRIPLET_FIELDS)
            pos = np.einsum("ij,ij->i", a, p, dtype=np.float64)
            neg = np.einsum("ij,ij->i", a, n, dtype=np.float64)
            margin = pos - neg
            arrays = {"margin": margin, "correct": (margin > 0).astype(np.float64), "category": self.category}
            extras = [{"cos_positive": float(x), "cos_negative": float(y)} for x, y in zip(pos, neg)]
            return Scores(arrays, extras)
        a, b = embed(self.columns["text_a"]), embed(self.columns["text_b"])
        cosine = np.einsum("ij,ij->i", a, b, dtype=np.float64)
        signed = np.where(self.similar == 1, cosine, -cosine)
        arrays = {"cosine": cosine, "similar": self.similar.astype(np.float64), "category": self.category}
        return Scores(arrays, [{"signed_cosine": float(s)} for s in signed])


def _kind(row: dict, path, line: int) -> str:
    pair = any(row[f] for f in PAIR_FIELDS)
    triplet = any(row[f] for f in TRIPLET_FIELDS)
    if pair and triplet:
        raise BadInput("a row with both pair fields (text_a, text_b, label) and triplet fields (anchor, positive, "
                       "negative); expected one kind per file", path, str(line))
    if not (pair or triplet):
        raise BadInput(f"expected a pair row {_shape('pairs')} or a triplet row {_shape('triplets')}", path,
                       str(line))
    return "pairs" if pair else "triplets"


def _shape(kind: str) -> str:
    if kind == "pairs":
        return '{"text_a", "text_b", "label": "similar"|"dissimilar", "category"?}'
    return '{"anchor", "positive", "negative", "category"?}'
