"""``classification``: a logistic-regression probe on the embeddings, as MTEB's classification tasks do.

Files: ``train`` and ``test``, rows ``{"text": str, "label": str}``. For each model a
scikit-learn :class:`~sklearn.linear_model.LogisticRegression` (``C``, default 1.0;
``max_iter``, default 1000; lbfgs, a fixed ``random_state``) is fitted on the embeddings of
the whole train split and predicts every test text. The examples are the test rows.

Per-example arrays: ``correct`` (0/1), ``pred`` and ``label`` (integer codes of the label
names, sorted, shared by both models). Metrics: ``accuracy`` (the mean of ``correct``) and
``macro_f1`` (scikit-learn's macro F1 over the classes present among the examples given:
their gold labels and predictions), both higher is better and both defined on any subset or
resample of the test examples. :meth:`ClassificationTask.select` keeps a subset of the test
rows and the whole train split, so every shard fits the same probe (same embeddings, same
deterministic solver) and the shards' rows merge into the full run's.

The probe runs on one BLAS thread: its result then cannot depend on the runner's core count
(shards on different machines fit bit-identical probes), and on a busy CI runner it is many
times faster than a multi-threaded fit of this size (1540 x 384, 77 classes: 0.1 s vs 1.5 s
on a loaded 2-core machine).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import replace

import numpy as np

from gate.data import Column, Table, read_table
from gate.errors import BadInput
from gate.metrics import MetricDef, mean_of
from gate.suite import TaskSpec
from gate.tasks import Embed, Scores, TaskData

COLUMNS = [Column("text", "text"), Column("label", "text")]
DEFAULT_C = 1.0
DEFAULT_MAX_ITER = 1000
#: the probe's solver and seed: fixed, so the same embeddings always give the same probe
SOLVER = "lbfgs"
RANDOM_STATE = 0


def macro_f1(label: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's macro F1 over the classes present in ``label`` or ``pred`` (NaN with no examples)."""
    from sklearn.metrics import f1_score

    label, pred = np.asarray(label, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if label.size == 0:
        return float("nan")
    # every listed class is a gold label or a prediction, so no F1 is 0/0: zero_division never applies
    return float(f1_score(label, pred, labels=np.union1d(label, pred), average="macro", zero_division=0.0))


def macro_f1_rows(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """:func:`macro_f1` of every row of ``(R, n)`` code arrays, as array operations.

    Per class, F1 = 2 TP / (gold count + predicted count); the macro mean runs over the
    classes with a gold label or a prediction in that row.
    """
    label, pred = np.asarray(label, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    rows, n = label.shape
    if n == 0:
        return np.full(rows, np.nan)
    k = int(max(label.max(), pred.max())) + 1
    offset = (np.arange(rows, dtype=np.int64) * k)[:, None]
    cells = rows * k
    tp = np.bincount((offset + label)[label == pred], minlength=cells).reshape(rows, k)
    gold = np.bincount((offset + label).ravel(), minlength=cells).reshape(rows, k)
    predicted = np.bincount((offset + pred).ravel(), minlength=cells).reshape(rows, k)
    total = gold + predicted
    present = total > 0
    f1 = np.divide(2.0 * tp, total, out=np.zeros((rows, k)), where=present)
    return f1.sum(axis=1) / present.sum(axis=1)


METRICS = [
    MetricDef("accuracy", True, mean_of("correct"), "share of the test texts the probe labels correctly"),
    MetricDef("macro_f1", True, lambda a: macro_f1(a["label"], a["pred"]),
              "F1 averaged over the classes (each class counts the same), logistic-regression probe",
              batch=lambda a: macro_f1_rows(a["label"], a["pred"])),
]


class ClassificationTask:
    metrics = METRICS
    example_score = ("correct", True)
    shardable = True

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (see :mod:`gate.catalogue`)."""
        return [m.name for m in METRICS], []

    def __init__(self, data: TaskData, classes: list[str], train_texts: list[str], train_codes: np.ndarray,
                 test_texts: list[str], test_codes: np.ndarray, c: float, max_iter: int):
        self.data, self.classes = data, classes
        self.train_texts, self.train_codes = train_texts, train_codes
        self.test_texts, self.test_codes = test_texts, test_codes
        self.c, self.max_iter = c, max_iter

    @classmethod
    def load(cls, spec: TaskSpec) -> "ClassificationTask":
        c = spec.fields.get("C", DEFAULT_C)
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not np.isfinite(c) or c <= 0:
            raise spec.error("C", f"expected a positive number (the inverse regularization strength), got {c!r}")
        max_iter = spec.fields.get("max_iter", DEFAULT_MAX_ITER)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise spec.error("max_iter", f"expected a positive integer, got {max_iter!r}")
        train = read_table(spec.path("train"), COLUMNS, "classification train file")
        test = read_table(spec.path("test"), COLUMNS, "classification test file")
        classes = _check_train(train)
        code = {name: i for i, name in enumerate(classes)}
        for row, line in zip(test.rows, test.lines):
            if row["label"] not in code:
                raise BadInput(f"label {row['label']!r} does not occur in the train split ({train.path.name}); "
                               "the probe can only predict labels it was trained on", test.path, str(line))
        train_texts = [r["text"] for r in train.rows]
        test_texts = [r["text"] for r in test.rows]
        notes = []
        seen = set(train_texts)
        leaked = sum(t in seen for t in test_texts)
        if leaked:
            notes.append(f"{leaked} of {len(test_texts)} test texts also occur in the train split")
        missing = len(classes) - len({r["label"] for r in test.rows})
        if missing:
            notes.append(f"{missing} of the {len(classes)} train classes have no test example")
        data = TaskData(
            spec=spec, n=len(test), data_sha256={"train": train.sha256, "test": test.sha256},
            example_ids=[str(line) for line in test.lines],
            example_text=[{"text": r["text"], "label": r["label"]} for r in test.rows], notes=notes,
        )
        return cls(data, classes, train_texts, np.array([code[r["label"]] for r in train.rows], dtype=np.int64),
                   test_texts, np.array([code[r["label"]] for r in test.rows], dtype=np.int64), float(c), max_iter)

    def select(self, indices: list[int]) -> "ClassificationTask":
        """The task restricted to these test examples (in this order); the probe still trains on all of train."""
        idx = list(indices)
        d = self.data
        data = replace(d, n=len(idx), example_ids=[d.example_ids[i] for i in idx],
                       example_text=[d.example_text[i] for i in idx], notes=list(d.notes))
        return ClassificationTask(data, self.classes, self.train_texts, self.train_codes,
                                  [self.test_texts[i] for i in idx], self.test_codes[idx], self.c, self.max_iter)

    def texts(self) -> list[str]:
        return self.train_texts + self.test_texts

    def labelled_texts(self) -> tuple[list[str], list[str]]:
        """The test texts and their label names (what an embedding map plots)."""
        return self.test_texts, [self.classes[c] for c in self.test_codes]

    def fit(self, embed: Embed):
        """The probe fitted on the train split's embeddings (deterministic for given embeddings)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        probe = LogisticRegression(C=self.c, max_iter=self.max_iter, solver=SOLVER, random_state=RANDOM_STATE)
        with warnings.catch_warnings(), threadpool_limits(limits=1):  # one thread: see the module docstring
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported as a task note instead
            probe.fit(np.asarray(embed(self.train_texts), dtype=np.float64), self.train_codes)
        if int(np.max(probe.n_iter_)) >= self.max_iter:
            note = (f"the logistic-regression probe stopped at max_iter={self.max_iter} before converging on "
                    "a model's embeddings; raise max_iter for a stable probe")
            if note not in self.data.notes:
                self.data.notes.append(note)
        return probe

    def score(self, embed: Embed) -> Scores:
        from threadpoolctl import threadpool_limits

        probe = self.fit(embed)
        if self.test_texts:
            with threadpool_limits(limits=1):
                pred = probe.predict(np.asarray(embed(self.test_texts), dtype=np.float64)).astype(np.int64)
        else:
            pred = np.zeros(0, dtype=np.int64)
        correct = (pred == self.test_codes).astype(np.float64)
        return Scores({"correct": correct, "pred": pred, "label": self.test_codes.copy()},
                      [{"predicted": self.classes[p]} for p in pred])


def _check_train(train: Table) -> list[str]:
    """The sorted class names of the train split; every class needs two examples, and there must be two classes."""
    counts = Counter(r["label"] for r in train.rows)
    if len(counts) < 2:
        only = next(iter(counts))
        raise BadInput(f"every row has the label {only!r}; a classifier needs at least 2 classes", train.path)
    for row, line in zip(train.rows, train.lines):
        if counts[row["label"]] == 1:
            raise BadInput(f"label {row['label']!r} has only this one training example; "
                           "every class needs at least 2", train.path, str(line))
    return sorted(counts)

