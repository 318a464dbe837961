"""The runner with encoders whose output is known (keyword one-hot vectors), injected at the provider seam.

Expected metrics are worked out by hand, so these tests pin the whole path —
suite, data, encode-once table, top-k, metrics, rules, verdict — without a model.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from gate.cache import EmbeddingCache
from gate.errors import ModelLoadError
from gate.runner import run_suite
from gate.suite import ModelSpec, load_suite
from gate.thresholds import Rule
from tests.conftest import write_jsonl

VOCAB = ["wing", "heat", "flow", "shock", "noise"]


class KeywordEncoder:
    """One-hot over VOCAB of the words it knows; records every text it encodes."""

    def __init__(self, spec: str, known: set[str]):
        self.spec, self.known, self.calls = spec, known, []

    def fingerprint(self) -> str:
        return "sha256:" + "-".join(sorted(self.known))

    def encode(self, texts, *, show_progress=False):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), len(VOCAB) + 1), dtype=np.float32)
        for i, t in enumerate(texts):
            words = set(t.split())
            for j, w in enumerate(VOCAB):
                out[i, j] = float(w in words and w in self.known)
            out[i, -1] = 0.01  # so no vector is all zeros
        return out


@pytest.fixture()
def suite_dir(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "text": "wing"}, {"id": "q2", "text": "heat"},
                                       {"id": "q3", "text": "noise"}])
    write_jsonl(tmp_path / "c.jsonl", [{"id": "d1", "text": "heat flow", "title": ""},
                                       {"id": "d2", "text": "wing", "title": "shock"},
                                       {"id": "d3", "text": "heat"}, {"id": "d4", "text": "noise wing"}])
    write_jsonl(tmp_path / "r.jsonl", [{"query_id": "q1", "doc_id": "d2", "relevance": 2},
                                       {"query_id": "q1", "doc_id": "d4", "relevance": 1},
                                       {"query_id": "q2", "doc_id": "d3", "relevance": 1},
                                       {"query_id": "q3", "doc_id": "d1", "relevance": 0}])
    write_jsonl(tmp_path / "sts.jsonl", [{"sentence1": "wing", "sentence2": "wing", "score": 5},
                                         {"sentence1": "wing", "sentence2": "heat", "score": 0},
                                         {"sentence1": "heat flow", "sentence2": "heat", "score": 3},
                                         {"sentence1": "noise", "sentence2": "noise wing", "score": 4}])
    (tmp_path / "suite.yaml").write_text(
        "version: 1\nname: kw\nmodels:\n  baseline: {provider: sentence-transformers, model: default}\n"
        "  candidate: {provider: sentence-transformers, model: ./cand}\n"
        "tasks:\n  - {name: sts, type: sts, group: general, data: sts.jsonl}\n"
        "  - {name: ir, type: retrieval, group: target, queries: q.jsonl, corpus: c.jsonl, qrels: r.jsonl, k: [1, 2]}\n")
    (tmp_path / "cand").mkdir()
    (tmp_path / "cand" / "modules.json").write_text("[]")
    return tmp_path


def loader_for(encoders: dict[str, KeywordEncoder]):
    def load(spec):
        return encoders[spec.model]
    return load


def test_known_encoder_gives_exact_ir_metrics_and_encodes_each_text_once(suite_dir):
    base = KeywordEncoder("base", {"wing", "heat"})
    cand = KeywordEncoder("cand", set(VOCAB))
    out = run_suite(load_suite(suite_dir / "suite.yaml"), loader=loader_for({"default": base, "./cand": cand}))
    m = out.results["metrics"]
    # q3 has no relevant document (relevance 0) and is skipped: 2 queries are evaluated.
    assert out.results["tasks"]["ir"]["n"] == 2
    assert out.results["tasks"]["ir"]["notes"] == ["1 of 3 queries have no relevant document and were skipped"]
    # Candidate, q1 "wing": d2 "shock wing" and d4 "noise wing" both score 1/sqrt(2) before norm; tie -> d2 first.
    # ranking [d2, d4]: recall@1 = 1/2, recall@2 = 1; ndcg@2 = (2 + 1/log2 3) / (2 + 1/log2 3) = 1.
    # q2 "heat": d3 "heat" scores 1, d1 "heat flow" 1/sqrt(2): ranking [d3, d1]: recall@1 = 1.
    assert m["ir/recall@1"]["candidate"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["ir/recall@2"]["candidate"] == pytest.approx(1.0)
    assert m["ir/ndcg@2"]["candidate"] == pytest.approx(1.0)
    assert m["ir/mrr@1"]["candidate"] == pytest.approx(1.0)
    # Baseline knows only wing/heat: q1 ties d2 and d4 (both one-hot "wing") -> d2 first as well; and
    # q2 "heat" ties d1 and d3 (both "heat"): d1 (lower index) first, and it is not relevant.
    assert m["ir/recall@1"]["baseline"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["ir/mrr@2"]["baseline"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["ir/precision@2"]["baseline"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert m["ir/recall@1"]["delta"] == pytest.approx(0.5)
    # each model encoded its unique texts exactly once, in one call
    for enc in (base, cand):
        assert len(enc.calls) == 1
        assert len(enc.calls[0]) == len(set(enc.calls[0]))
    assert "shock wing" in cand.calls[0]  # the title is prepended to the document text
    assert out.results["verdict"] == "pass" and "No thresholds" in out.results["reason"]


def test_same_model_for_both_roles_is_encoded_once(suite_dir):
    shared = KeywordEncoder("x", set(VOCAB))
    suite = load_suite(suite_dir / "suite.yaml")
    out = run_suite(suite, overrides={"candidate": suite.models["baseline"]}, loader=loader_for({"default": shared}))
    assert len(shared.calls) == 1
    assert all(v["delta"] == 0.0 for v in out.results["metrics"].values())


def test_candidate_that_fails_mid_run_is_an_error_never_a_pass(suite_dir):
    def load(spec):
        if spec.model == "./cand":
            raise ModelLoadError("cannot load model sentence-transformers:./cand: weights are corrupt")
        return KeywordEncoder("base", set(VOCAB))

    rules = [Rule("max_drop", 1.0, group="general", optional=True)]
    out = run_suite(load_suite(suite_dir / "suite.yaml"), loader=load, rules=rules)
    assert out.results["verdict"] == "error"
    assert out.results["errors"] == ["cannot load model sentence-transformers:./cand: weights are corrupt"]
    assert out.results["metrics"]["sts/spearman"]["candidate"] is None
    assert out.results["rules"][0]["status"] == "skipped"  # optional rule on a missing value, yet the verdict is error
    assert all(row["candidate"] is None for row in out.examples)


def test_nan_metric_fails_the_rule_as_error(suite_dir):
    class Constant(KeywordEncoder):
        def encode(self, texts, *, show_progress=False):
            return np.ones((len(texts), 3), dtype=np.float32)  # every cosine is 1: Spearman is undefined

    out = run_suite(load_suite(suite_dir / "suite.yaml"), rules=[Rule("min", 0.0, metric="sts/spearman")],
                    loader=loader_for({"default": KeywordEncoder("b", set(VOCAB)), "./cand": Constant("c", set())}))
    assert out.results["metrics"]["sts/spearman"]["candidate"] is None
    assert out.results["rules"][0]["status"] == "error"
    assert out.results["verdict"] == "error"


def test_embedding_cache_reuses_and_detects_corruption(suite_dir, tmp_path):
    suite = load_suite(suite_dir / "suite.yaml")
    cache = EmbeddingCache(tmp_path / "cache")
    first = KeywordEncoder("c", set(VOCAB))
    loaders = loader_for({"default": first, "./cand": first})
    cold = run_suite(suite, loader=loaders, cache=cache)
    n_texts = len(first.calls[0])
    second = KeywordEncoder("c", set(VOCAB))
    warm = run_suite(suite, loader=loader_for({"default": second, "./cand": second}), cache=cache)
    assert second.calls == []  # nothing re-encoded
    assert warm.results["metrics"] == cold.results["metrics"]
    cache.close()
    # Corrupt one stored vector: it must be detected and recomputed, never used.
    db = sqlite3.connect(tmp_path / "cache" / EmbeddingCache.FILE)
    (key,) = db.execute("SELECT text_sha256 FROM embeddings LIMIT 1").fetchone()
    db.execute("UPDATE embeddings SET vector = zeroblob(length(vector)) WHERE text_sha256 = ?", (key,))
    db.commit()
    db.close()
    cache = EmbeddingCache(tmp_path / "cache")
    third = KeywordEncoder("c", set(VOCAB))
    again = run_suite(suite, loader=loader_for({"default": third, "./cand": third}), cache=cache)
    assert cache.corrupt == 1
    assert len(third.calls) == 1 and len(third.calls[0]) == 1 < n_texts
    assert again.results["metrics"] == cold.results["metrics"]


def test_cache_keys_include_model_options(suite_dir, tmp_path):
    """Same weights, different max_seq_length: the candidate must not be served the baseline's vectors."""
    suite = load_suite(suite_dir / "suite.yaml")
    short = ModelSpec("sentence-transformers", "default", options=(("max_seq_length", 3),), base_dir=suite_dir)
    full = KeywordEncoder("full", set(VOCAB))
    truncated = KeywordEncoder("full", {"wing"})  # same fingerprint, other vectors

    def load(spec):
        return truncated if spec.options else full

    truncated.fingerprint = full.fingerprint  # identical weights on disk
    cache = EmbeddingCache(tmp_path / "cache")
    uncached = run_suite(suite, overrides={"candidate": short}, loader=load)
    cached = run_suite(suite, overrides={"candidate": short}, loader=load, cache=cache)
    assert cached.results["metrics"] == uncached.results["metrics"]
    assert cached.results["metrics"]["ir/recall@1"]["delta"] != 0.0


def test_unreadable_cache_database_is_set_aside_and_recreated(suite_dir, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / EmbeddingCache.FILE).write_bytes(b"this is not a database" * 100)
    messages: list[str] = []
    cache = EmbeddingCache(tmp_path / "cache", log=messages.append)
    enc = KeywordEncoder("c", set(VOCAB))
    out = run_suite(load_suite(suite_dir / "suite.yaml"), loader=loader_for({"default": enc, "./cand": enc}), cache=cache)
    assert out.results["verdict"] == "pass" and "unreadable" in messages[0]
    assert list((tmp_path / "cache").glob("embeddings.sqlite3.corrupt-*"))


def test_a_model_is_scored_and_its_vectors_dropped_before_the_next_model_loads(suite_dir):
    """The peak of a run is one model's table: a 1 M-document corpus must not be held once per model."""
    import gc
    import weakref

    returned: dict[str, weakref.ref] = {}
    alive_at_load: dict[str, list[str]] = {}

    class Tracked(KeywordEncoder):
        def encode(self, texts, *, show_progress=False):
            out = super().encode(texts)
            returned[self.spec] = weakref.ref(out)
            return out

    def load(spec):
        gc.collect()
        alive_at_load[spec.model] = [name for name, ref in returned.items() if ref() is not None]
        return Tracked(spec.model, set(VOCAB) if spec.model == "./cand" else {"wing"})

    out = run_suite(load_suite(suite_dir / "suite.yaml"), loader=load)
    assert alive_at_load == {"default": [], "./cand": []}
    assert set(returned) == {"default", "./cand"}
    assert all(v["baseline"] is not None and v["candidate"] is not None  # both models were scored
               for v in out.results["metrics"].values())


def test_cached_and_fresh_vectors_of_other_sizes_are_an_error(suite_dir, tmp_path):
    suite = load_suite(suite_dir / "suite.yaml")
    cache = EmbeddingCache(tmp_path / "cache")
    enc = KeywordEncoder("c", set(VOCAB))
    run_suite(suite, loader=loader_for({"default": enc, "./cand": enc}), cache=cache)
    cache.close()
    db = sqlite3.connect(tmp_path / "cache" / EmbeddingCache.FILE)
    db.execute("DELETE FROM embeddings WHERE rowid IN (SELECT rowid FROM embeddings LIMIT 1)")
    db.commit()
    db.close()

    class Wider(KeywordEncoder):  # same fingerprint, but now 7-dimensional: the file was tampered with
        def encode(self, texts, *, show_progress=False):
            return np.ones((len(texts), len(VOCAB) + 2), dtype=np.float32)

    wider = Wider("c", set(VOCAB))
    cache = EmbeddingCache(tmp_path / "cache")
    out = run_suite(suite, loader=loader_for({"default": wider, "./cand": wider}), cache=cache)
    assert out.results["verdict"] == "error"
    assert "returned 7-dimensional vectors, and its cached ones have 6" in out.results["errors"][0]
    assert cache._db.execute("SELECT count(*) FROM embeddings WHERE dim != 6").fetchone() == (0,)  # not stored


@pytest.mark.model
def test_a_run_whose_vectors_are_all_cached_never_loads_the_model(suite_dir, tmp_path):
    from gate.providers import load_embedder

    suite = load_suite(suite_dir / "suite.yaml")
    same = {"candidate": suite.models["baseline"]}
    cache = EmbeddingCache(tmp_path / "cache")
    loaded = []

    def load(spec):
        loaded.append(load_embedder(spec))
        return loaded[-1]

    cold = run_suite(suite, overrides=same, loader=load, cache=cache)
    warm = run_suite(suite, overrides=same, loader=load, cache=cache)
    assert loaded[0]._model is not None  # the cold run loaded the weights to encode
    assert loaded[1]._model is None  # the warm run only hashed the model folder
    assert warm.results["metrics"] == cold.results["metrics"]
    assert warm.results["models"] == cold.results["models"]


def test_float16_and_float32_vectors_of_one_model_never_share_cache_entries(suite_dir, tmp_path):
    """dtype auto: the same suite encodes in float16 on a GPU runner and float32 on a CPU one."""
    suite = load_suite(suite_dir / "suite.yaml")
    cache = EmbeddingCache(tmp_path / "cache")
    cpu = KeywordEncoder("c", set(VOCAB))
    run_suite(suite, loader=loader_for({"default": cpu, "./cand": cpu}), cache=cache)
    gpu = KeywordEncoder("c", set(VOCAB))
    gpu.cache_variant = lambda: "float16"
    run_suite(suite, loader=loader_for({"default": gpu, "./cand": gpu}), cache=cache)
    assert len(gpu.calls) == 1  # nothing of the float32 run was reused
    again = KeywordEncoder("c", set(VOCAB))
    again.cache_variant = lambda: "float16"
    run_suite(suite, loader=loader_for({"default": again, "./cand": again}), cache=cache)
    assert again.calls == []  # its own entries are


def test_a_corpus_that_repeats_texts_ranks_without_copying_the_matrix(suite_dir, monkeypatch):
    """A repeated document, or one equal to a query, makes the corpus's rows non-contiguous in the table:
    top-k must gather them (``rows``) rather than copy the whole corpus, and rank exactly as before."""
    import gate.tasks.retrieval as retrieval

    write_jsonl(suite_dir / "c.jsonl", [{"id": "d1", "text": "heat flow"}, {"id": "d2", "text": "wing"},
                                        {"id": "d3", "text": "heat"}, {"id": "d4", "text": "noise wing"},
                                        {"id": "d5", "text": "heat"}])  # "heat" twice, and equal to query q2
    seen = []
    real_top_k = retrieval.top_k

    def spy(queries, corpus, k, *, rows=None, **kw):
        seen.append(rows is not None)
        return real_top_k(queries, corpus, k, rows=rows, **kw)

    enc = KeywordEncoder("c", set(VOCAB))
    plain = run_suite(load_suite(suite_dir / "suite.yaml"), loader=loader_for({"default": enc, "./cand": enc}))
    monkeypatch.setattr(retrieval, "top_k", spy)
    spied = run_suite(load_suite(suite_dir / "suite.yaml"), loader=loader_for({"default": enc, "./cand": enc}))
    assert seen and all(seen)  # gathered by row index
    assert spied.results["metrics"] == plain.results["metrics"]
    # q2 "heat": d3 and d5 tie at cosine 1; the lower index (d3) ranks first
    row = next(r for r in spied.examples if r["id"] == "q2")
    assert row["candidate"]["top"][:2] == ["d3", "d5"]


@pytest.mark.parametrize("bad, message", [
    (np.nan, "produced NaN or infinite embeddings"),
    (0.0, "produced 1 all-zero embeddings (the first for 'noise'): cosine similarity is undefined"),
])
def test_a_nan_or_zero_vector_is_an_error_and_never_cached(suite_dir, tmp_path, bad, message):
    class Broken(KeywordEncoder):
        def encode(self, texts, *, show_progress=False):
            out = super().encode(texts)
            out[[i for i, t in enumerate(texts) if t == "noise"]] = bad
            return out

    cache = EmbeddingCache(tmp_path / "cache")
    good, broken = KeywordEncoder("b", set(VOCAB)), Broken("c", {"wing", "heat"})  # other fingerprints
    out = run_suite(load_suite(suite_dir / "suite.yaml"), loader=loader_for({"default": good, "./cand": broken}),
                    cache=cache)
    assert out.results["verdict"] == "error"
    assert len(out.results["errors"]) == 1 and message in out.results["errors"][0]
    (stored,) = cache._db.execute("SELECT count(*) FROM embeddings").fetchone()
    assert stored == len(good.calls[0])  # the baseline's vectors only
