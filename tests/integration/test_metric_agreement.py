"""gate's metrics on real data with the real default model agree with the reference implementations.

References: pytrec_eval (trec_eval), scipy.stats, and sentence-transformers' own
EmbeddingSimilarityEvaluator / InformationRetrievalEvaluator, which encode the
texts themselves — so these tests also check gate's encode-once / normalize-once path.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import pytrec_eval
from scipy import stats

from gate.runner import EmbeddingTable, normalize
from gate.suite import TaskSpec
from gate.tasks.retrieval import RetrievalTask
from gate.tasks.sts import STSTask

pytestmark = pytest.mark.model


def _task_spec(small_data, name, type_, **fields):
    return TaskSpec(name=name, type=type_, group="g", fields=fields, models={}, pointer="/tasks/0", suite_dir=small_data)


def _embed(embedder, texts):
    unique = list(dict.fromkeys(texts))
    return EmbeddingTable(unique, normalize(embedder.encode(unique)))


@pytest.fixture(scope="module")
def retrieval(small_data, default_embedder):
    task = RetrievalTask.load(_task_spec(small_data, "cran", "retrieval", queries="queries.jsonl",
                                         corpus="corpus.jsonl", qrels="qrels.jsonl", k=[1, 3, 5, 10, 100]))
    table = _embed(default_embedder, task.texts())
    return task, table, task.score(table)


@pytest.fixture(scope="module")
def sts(small_data, default_embedder):
    task = STSTask.load(_task_spec(small_data, "stsb", "sts", data="stsb.jsonl"))
    return task, task.score(_embed(default_embedder, task.texts()))


def test_retrieval_matches_pytrec_eval_on_real_ranking(retrieval):
    task, table, scores = retrieval
    q_emb, d_emb = table(task.queries), table(task.docs)
    full = q_emb @ d_emb.T  # small corpus: the full matrix is the reference ranking
    qrels: dict[str, dict[str, int]] = {}
    for q, d, r in zip(task.q_idx, task.d_idx, task.rel):
        qrels.setdefault(str(q), {})[task.doc_ids[d]] = int(r)
    run = {str(q): {task.doc_ids[d]: float(full[q, d]) for d in range(len(task.docs))} for q in range(len(task.queries))}
    measures = {f"{m}_{k}" for m in ("recall", "P", "ndcg_cut", "map_cut") for k in task.ks}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    names = {"recall": "recall_{k}", "precision": "P_{k}", "ndcg": "ndcg_cut_{k}", "map": "map_cut_{k}"}
    for metric, ref_name in names.items():
        for k in task.ks:
            ours = scores.arrays[f"{metric}@{k}"]
            theirs = np.array([ref[str(q)][ref_name.format(k=k)] for q in range(len(task.queries))])
            np.testing.assert_allclose(ours, theirs, atol=1e-6, err_msg=f"{metric}@{k}")
            assert ours.mean() == pytest.approx(theirs.mean(), abs=1e-6)
    # mrr@k: pytrec_eval's recip_rank over the top k of the same run
    for k in task.ks:
        cut = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:k]) for q, docs in run.items()}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
        theirs = np.array([rr[str(q)]["recip_rank"] for q in range(len(task.queries))])
        np.testing.assert_allclose(scores.arrays[f"mrr@{k}"], theirs, atol=1e-6, err_msg=f"mrr@{k}")


def test_retrieval_matches_sentence_transformers_evaluator(small_data, retrieval, default_embedder):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    task, _, scores = retrieval
    relevant: dict[str, set[str]] = {}
    for q, d, r in zip(task.q_idx, task.d_idx, task.rel):
        if r > 0:
            relevant.setdefault(str(q), set()).add(task.doc_ids[d])
    evaluator = InformationRetrievalEvaluator(
        queries={str(i): t for i, t in enumerate(task.queries)},
        corpus=dict(zip(task.doc_ids, task.docs)), relevant_docs=relevant,
        mrr_at_k=[10], ndcg_at_k=[10], precision_recall_at_k=[1, 5, 10], accuracy_at_k=[1], map_at_k=[100],
        write_csv=False,
    )
    ref = evaluator(default_embedder.model)
    assert scores.arrays["ndcg@10"].mean() == pytest.approx(ref["cosine_ndcg@10"], abs=1e-6)
    assert scores.arrays["mrr@10"].mean() == pytest.approx(ref["cosine_mrr@10"], abs=1e-6)
    for k in (1, 5, 10):
        assert scores.arrays[f"recall@{k}"].mean() == pytest.approx(ref[f"cosine_recall@{k}"], abs=1e-6)
        assert scores.arrays[f"precision@{k}"].mean() == pytest.approx(ref[f"cosine_precision@{k}"], abs=1e-6)


def test_sts_matches_scipy_and_sentence_transformers_evaluator(small_data, sts, default_embedder):
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    full, _ = sts
    task = STSTask(full.data, full.s1[:150], full.s2[:150], full.gold[:150])
    # Batch size 1 on both sides: padded batches change the floats at ~1e-7, and near-tied cosines then
    # swap ranks and move Spearman by ~1e-6; one sentence at a time, both compute the same embeddings.
    single = dataclasses.replace(default_embedder, batch_size=1)
    unique = list(dict.fromkeys(task.texts()))
    raw = single.encode(unique)
    scores = task.score(EmbeddingTable(unique, normalize(raw.copy())))
    metrics = {m.name: m.compute(scores.arrays) for m in task.metrics}
    row = {t: i for i, t in enumerate(unique)}
    raw1, raw2 = raw[[row[t] for t in task.s1]], raw[[row[t] for t in task.s2]]
    cos = np.sum(raw1 * raw2, axis=1) / (np.linalg.norm(raw1, axis=1) * np.linalg.norm(raw2, axis=1))
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(cos, task.gold).statistic, abs=1e-6)
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(cos, task.gold).statistic, abs=1e-6)
    ref = EmbeddingSimilarityEvaluator(task.s1, task.s2, task.gold.tolist(), write_csv=False,
                                       batch_size=1)(default_embedder.model)
    assert metrics["spearman"] == pytest.approx(ref["spearman_cosine"], abs=1e-6)
    assert metrics["pearson"] == pytest.approx(ref["pearson_cosine"], abs=1e-6)
    assert 0.5 < metrics["spearman"] < 1.0  # a real model on real STS-B, not a degenerate score
