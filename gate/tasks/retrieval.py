"""``retrieval``: rank a corpus for each query by cosine similarity; graded judgements.

Files: queries ``{id, text}``, corpus ``{id, text[, title]}`` (the title, when present,
is prepended to the text, as sentence-transformers' IR evaluator does), qrels
``{query_id, doc_id, relevance}`` with integer relevance; > 0 is relevant.
Queries with no relevant document are skipped (and counted in the task notes),
as trec_eval and sentence-transformers do. Metrics: recall, precision, mrr, ndcg,
map at every ``k`` of the task (default 1, 5, 10).
"""

from __future__ import annotations

import numpy as np

from gate.data import Column, read_table, scan_table
from gate.errors import BadInput
from gate.metrics import MetricDef, mean_of
from gate.metrics.ranking import RANKING_METRICS, gains_matrix, ideal_gains, per_query_metrics
from gate.search import top_k
from gate.suite import TaskSpec
from gate.tasks import Embed, Scores, TaskData, selected

DEFAULT_K = [1, 5, 10]
SHOWN_DOCS = 10

_DESCRIPTIONS = {
    "recall": "share of the relevant documents found in the top {k}",
    "precision": "share of the top {k} that is relevant",
    "mrr": "reciprocal rank of the first relevant document within {k}",
    "ndcg": "normalized discounted cumulative gain at {k} (graded)",
    "map": "mean average precision at {k}",
}


def _doc_text(row: dict) -> str:
    title = row.get("title", "").strip()
    return f"{title} {row['text']}" if title else row["text"]


class RetrievalTask:
    def __init__(self, data: TaskData, ks: list[int], queries: list[str], doc_ids: list[str], docs: list[str],
                 judgements: tuple[np.ndarray, np.ndarray, np.ndarray]):
        self.data, self.ks, self.queries, self.doc_ids, self.docs = data, ks, queries, doc_ids, docs
        self.q_idx, self.d_idx, self.rel = judgements
        self.example_score = (f"ndcg@{ks[-1]}", True)
        self.metrics = [MetricDef(f"{m}@{k}", True, mean_of(f"{m}@{k}"), _DESCRIPTIONS[m].format(k=k))
                        for m in RANKING_METRICS for k in ks]

    @classmethod
    def metric_names(cls, spec: TaskSpec) -> tuple[list[str], list[str]]:
        """The metrics this task reports, known from the suite alone (see :mod:`gate.catalogue`)."""
        ks = sorted(spec.fields.get("k", DEFAULT_K))
        return [f"{m}@{k}" for m in RANKING_METRICS for k in ks], []

    @classmethod
    def load(cls, spec: TaskSpec) -> "RetrievalTask":
        ks = sorted(spec.fields.get("k", DEFAULT_K))
        qt = read_table(spec.path("queries"), [Column("id", "id"), Column("text", "text")], "queries file")
        corpus_path = spec.path("corpus")
        corpus_sha, rows_of_corpus = scan_table(corpus_path, [Column("id", "id"), Column("text", "text"),
                                                              Column("title", "optional_text")], "corpus file")
        doc_ids: list[str] = []
        docs: list[str] = []
        d_pos: dict[str, int] = {}
        for line, row in rows_of_corpus:  # row by row: a big corpus keeps only its ids and texts
            if row["id"] in d_pos:
                raise BadInput(f"duplicate document id {row['id']!r}", corpus_path, str(line))
            d_pos[row["id"]] = len(docs)
            doc_ids.append(row["id"])
            docs.append(_doc_text(row))
        rt = read_table(spec.path("qrels"), [Column("query_id", "id"), Column("doc_id", "id"),
                                             Column("relevance", "integer")], "qrels file")
        q_pos = _index(qt, "query")
        seen: set[tuple[str, str]] = set()
        q_idx, d_idx, rel = [], [], []
        for row, line in zip(rt.rows, rt.lines):
            qid, did = row["query_id"], row["doc_id"]
            if qid not in q_pos:
                raise BadInput(f"query_id {qid!r} is not an id in {qt.path.name}", rt.path, str(line))
            if did not in d_pos:
                raise BadInput(f"doc_id {did!r} is not an id in {corpus_path.name}", rt.path, str(line))
            if (qid, did) in seen:
                raise BadInput(f"duplicate judgement for query {qid!r} and document {did!r}", rt.path, str(line))
            seen.add((qid, did))
            q_idx.append(q_pos[qid])
            d_idx.append(d_pos[did])
            rel.append(row["relevance"])
        q_all, d_all, r_all = np.array(q_idx, np.int64), np.array(d_idx, np.int64), np.array(rel, np.int64)
        evaluable = np.zeros(len(qt), dtype=bool)
        evaluable[q_all[r_all > 0]] = True
        if not evaluable.any():
            raise BadInput("no query has a relevant document (relevance > 0); nothing to evaluate", rt.path)
        # Renumber the evaluable queries 0..n-1 and keep only their judgements.
        new_q = np.full(len(qt), -1, dtype=np.int64)
        new_q[evaluable] = np.arange(int(evaluable.sum()))
        keep = evaluable[q_all]
        judgements = (new_q[q_all[keep]], d_all[keep], r_all[keep])
        rows = [r for r, e in zip(qt.rows, evaluable) if e]
        notes = []
        skipped = int((~evaluable).sum())
        if skipped:
            notes.append(f"{skipped} of {len(qt)} queries have no relevant document and were skipped")
        if ks[-1] > len(docs):
            notes.append(f"k={ks[-1]} is larger than the corpus ({len(docs)} documents)")
        data = TaskData(
            spec=spec, n=len(rows),
            data_sha256={"queries": qt.sha256, "corpus": corpus_sha, "qrels": rt.sha256},
            example_ids=[r["id"] for r in rows], example_text=[{"query": r["text"]} for r in rows], notes=notes,
        )
        return cls(data, ks, [r["text"] for r in rows], doc_ids, docs, judgements)

    def select(self, indices) -> "RetrievalTask":
        """The queries at ``indices`` (renumbered, with their judgements); the corpus stays whole."""
        idx = np.asarray(indices, dtype=np.int64)
        new = np.full(len(self.queries), -1, dtype=np.int64)
        new[idx] = np.arange(len(idx))
        keep = new[self.q_idx] >= 0
        out = selected(self, indices, queries=self.queries)
        out.q_idx, out.d_idx, out.rel = new[self.q_idx[keep]], self.d_idx[keep], self.rel[keep]
        return out

    def texts(self) -> list[str]:
        return self.queries + self.docs

    def score(self, embed: Embed) -> Scores:
        q = embed(self.queries)
        gather = getattr(embed, "rows", None)  # the runner's table: the corpus's rows without a copy
        corpus, rows = gather(self.docs) if gather else (embed(self.docs), None)
        depth = max(self.ks)
        ranked, _ = top_k(q, corpus, depth, rows=rows)
        n_q, n_d = len(self.queries), len(self.docs)
        gains = gains_matrix(ranked, self.q_idx, self.d_idx, self.rel, n_d)
        ideal = ideal_gains(self.q_idx, self.rel, n_q, depth)
        n_relevant = np.bincount(self.q_idx[self.rel > 0], minlength=n_q)
        arrays = per_query_metrics(gains, ideal, n_relevant, self.ks)
        shown = ranked[:, :SHOWN_DOCS]
        extras = [{"top": [self.doc_ids[j] for j in row]} for row in shown]
        return Scores(arrays, extras)


def _index(table, what: str) -> dict[str, int]:
    pos: dict[str, int] = {}
    for i, (row, line) in enumerate(zip(table.rows, table.lines)):
        if row["id"] in pos:
            raise BadInput(f"duplicate {what} id {row['id']!r}", table.path, str(line))
        pos[row["id"]] = i
    return pos
