"""``clustering``: k-means on the embeddings, scored against the gold labels.

File: ``data``, rows ``{"text": str, "label": str}``. For each model scikit-learn's
:class:`~sklearn.cluster.KMeans` (``k`` clusters, default the number of distinct labels;
``n_init=10``; ``random_state=seed``, default 0) clusters the embeddings of every text.

Per-example arrays: ``cluster`` and ``label`` (integer codes). Metrics: ``v_measure``
(scikit-learn's ``v_measure_score``) and ``ari`` (``adjusted_rand_score``), both higher is
better, recomputed on whatever examples they are given (resamples included).

Cluster ids are arbitrary, so each model's clusters are renumbered onto the label codes by
a maximum-overlap matching (the Hungarian method: cluster j is the one that best matches
label j; clusters left over when ``k`` exceeds the labels take the next codes). A
renumbering changes neither metric, and it makes the two models' ids comparable example by
example, which the paired swap test relies on. The task is not shardable: k-means needs
every point at once.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np

from gate.data import Column, read_table
from gate.errors import BadInput
from gate.metrics import MetricDef
from gate.suite import TaskSpec
from gate.tasks import Embed, Scores, TaskData

COLUMNS = [Column("text", "text"), Column("label", "text")]
N_INIT = 10
DEFAULT_SEED = 0
MAX_SEED = 2**31 - 1  # as every seed field of a suite
#: at most this many contingency cells per array operation in the batched metrics
_CHUNK_CELLS = 4_000_000


def v_measure(label: np.ndarray, cluster: np.ndarray) -> float:
    from sklearn.metrics import v_measure_score

    label, cluster = np.asarray(label, dtype=np.int64), np.asarray(cluster, dtype=np.int64)
    return float(v_measure_score(label, cluster)) if label.size else float("nan")


def ari(label: np.ndarray, cluster: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    label, cluster = np.asarray(label, dtype=np.int64), np.asarray(cluster, dtype=np.int64)
    return float(adjusted_rand_score(label, cluster)) if label.size else float("nan")


def _contingency_rows(label: np.ndarray, cluster: np.ndarray):
    """Per chunk of rows of ``(R, n)`` code arrays: (row slice, ``(r, L, K)`` float contingency tables)."""
    label, cluster = np.asarray(label, dtype=np.int64), np.asarray(cluster, dtype=np.int64)
    rows = label.shape[0]
    n_l, n_k = int(label.max()) + 1, int(cluster.max()) + 1
    step = max(1, _CHUNK_CELLS // (n_l * n_k))
    for start in range(0, rows, step):
        lab, clu = label[start:start + step], cluster[start:start + step]
        r = len(lab)
        flat = (np.arange(r, dtype=np.int64)[:, None] * n_l + lab) * n_k + clu
        table = np.bincount(flat.ravel(), minlength=r * n_l * n_k).reshape(r, n_l, n_k).astype(np.float64)
        yield slice(start, start + r), table


def _entropy(counts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of class counts; rows sum to ``n``."""
    p = counts / n[:, None]
    return -np.sum(np.where(counts > 0, p * np.log(np.where(counts > 0, p, 1.0)), 0.0), axis=1)


def _row_tables(label: np.ndarray, cluster: np.ndarray):
    """The NaN-filled output of a batched metric and its (rows, contingency tables, row sizes) chunks (none
    when there are no examples, so every row stays NaN)."""
    label = np.asarray(label)
    out = np.full(label.shape[0], np.nan)
    if label.shape[1] == 0:
        return out, iter(())
    return out, ((rows, table, table.sum(axis=(1, 2))) for rows, table in _contingency_rows(label, cluster))


def v_measure_rows(label: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """:func:`v_measure` of every row of ``(R, n)`` code arrays (scikit-learn's definition, beta = 1)."""
    out, tables = _row_tables(label, cluster)
    for rows, table, n in tables:
        a, b = table.sum(axis=2), table.sum(axis=1)  # per label, per cluster
        h_c, h_k = _entropy(a, n), _entropy(b, n)
        outer = a[:, :, None] * b[:, None, :]
        nz = table > 0
        ratio = np.where(nz, table * n[:, None, None] / np.where(nz, outer, 1.0), 1.0)
        mi = np.maximum(np.sum(np.where(nz, table / n[:, None, None] * np.log(ratio), 0.0), axis=(1, 2)), 0.0)
        # one label (or one cluster): scikit-learn sets the mutual information to 0 and the ratio to 1
        single = ((a > 0).sum(axis=1) == 1) | ((b > 0).sum(axis=1) == 1)
        mi = np.where(single, 0.0, mi)
        hom = np.divide(mi, h_c, out=np.ones_like(mi), where=h_c > 0)
        com = np.divide(mi, h_k, out=np.ones_like(mi), where=h_k > 0)
        s = hom + com
        out[rows] = np.divide(2.0 * hom * com, s, out=np.zeros_like(s), where=s > 0)
    return out


def ari_rows(label: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """:func:`ari` of every row of ``(R, n)`` code arrays (scikit-learn's pair-confusion form)."""
    out, tables = _row_tables(label, cluster)
    for rows, table, n in tables:
        squares = np.sum(table ** 2, axis=(1, 2))
        tp = squares - n
        fp = np.sum(table.sum(axis=1) ** 2, axis=1) - squares  # same cluster, different label
        fn = np.sum(table.sum(axis=2) ** 2, axis=1) - squares  # same label, different cluster
        tn = n ** 2 - fp - fn - squares
        perfect = (fn == 0) & (fp == 0)
        denom = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
        value = np.divide(2.0 * (tp * tn - fn * fp), denom, out=np.ones_like(denom), where=~perfect)
        out[rows] = value
    return out


METRICS = [
    MetricDef("v_measure", True, lambda a: v_measure(a["label"], a["cluster"]),
              "V-measure of the k-means clusters against the labels (harmonic mean of homogeneity and "
              "completeness)", batch=lambda a: v_measure_rows(a["label"], a["cluster"])),
    MetricDef("ari", True, lambda a: ari(a["label"], a["cluster"]),
              "adjusted Rand index of the k-means clusters against the labels (0: chance, 1: the labels)",
              batch=lambda a: ari_rows(a["label"], a["cluster"])),
]


def align_clusters(cluster: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Renumber cluster ids onto label codes by maximum overlap (a bijection, so no metric changes).

    Clusters matched to no label (more clusters than labels) take the codes after the labels,
    in the order of their old ids.
    """
    from scipy.optimize import linear_sum_assignment

    cluster, label = np.asarray(cluster, dtype=np.int64), np.asarray(label, dtype=np.int64)
    n_k, n_l = int(cluster.max()) + 1, int(label.max()) + 1
    table = np.zeros((n_k, n_l), dtype=np.int64)
    np.add.at(table, (cluster, label), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    new = np.full(n_k, -1, dtype=np.int64)
    new[rows] = cols
    spare = np.flatnonzero(new < 0)
    new[spare] = n_l + np.arange(len(spare))
    return new[cluster]


class ClusteringTask:
    metrics = METRICS
    example_score = None
    #: k-means needs every point at once: the runner scores this task whole
    shardable = False

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (see :mod:`gate.catalogue`)."""
        return [m.name for m in METRICS], []

    def __init__(self, data: TaskData, classes: list[str], texts: list[str], codes: np.ndarray, k: int, seed: int):
        self.data, self.classes, self._texts, self.codes, self.k, self.seed = data, classes, texts, codes, k, seed

    @classmethod
    def load(cls, spec: TaskSpec) -> "ClusteringTask":
        seed = spec.fields.get("seed", DEFAULT_SEED)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise spec.error("seed", f"expected an integer from 0 to {MAX_SEED}, got {seed!r}")
        table = read_table(spec.path("data"), COLUMNS, "clustering data file")
        counts = Counter(r["label"] for r in table.rows)
        if len(counts) < 2:
            raise BadInput(f"every row has the label {next(iter(counts))!r}; clustering is scored against "
                           "at least 2 labels", table.path)
        k = spec.fields.get("k", len(counts))
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= len(table):
            raise spec.error("k", f"expected an integer from 2 to the number of texts ({len(table)}), got {k!r}")
        classes = sorted(counts)
        code = {name: i for i, name in enumerate(classes)}
        texts = [r["text"] for r in table.rows]
        notes = []
        duplicates = len(texts) - len(set(texts))
        if duplicates:
            notes.append(f"{duplicates} texts repeat an earlier text (same embedding)")
        data = TaskData(
            spec=spec, n=len(table), data_sha256={"data": table.sha256},
            example_ids=[str(line) for line in table.lines],
            example_text=[{"text": r["text"], "label": r["label"]} for r in table.rows], notes=notes,
        )
        return cls(data, classes, texts, np.array([code[r["label"]] for r in table.rows], dtype=np.int64), k, seed)

    def texts(self) -> list[str]:
        return list(self._texts)

    def labelled_texts(self) -> tuple[list[str], list[str]]:
        """The texts and their label names (what an embedding map plots)."""
        return list(self._texts), [self.classes[c] for c in self.codes]

    def score(self, embed: Embed) -> Scores:
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        x = np.asarray(embed(self._texts), dtype=np.float64)
        # one thread: the clusters cannot depend on the core count, and it is faster on a busy runner
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
            warnings.simplefilter("always", ConvergenceWarning)
            found = KMeans(n_clusters=self.k, n_init=N_INIT, random_state=self.seed).fit_predict(x)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            note = (f"k-means found fewer than k={self.k} distinct clusters on a model's embeddings "
                    "(fewer distinct points than k)")
            if note not in self.data.notes:
                self.data.notes.append(note)
        for w in caught:  # anything else is not ours to swallow
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        cluster = align_clusters(found, self.codes)
        return Scores({"cluster": cluster, "label": self.codes.copy()})
