"""Shared fixtures: real data subsets from examples/, the real default model, a real tiny fine-tune."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = ROOT / "examples" / "demo" / "data"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def valid_results(out: Path) -> dict:
    """``out/results.json``, checked against the shipped results schema."""
    import jsonschema

    from gate.documents import load_schema

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(load_schema("results")).validate(results)
    return results


def parse_outputs(text: str) -> dict[str, str]:
    """The step outputs in a $GITHUB_OUTPUT file, as the runner reads them (``name<<DELIMITER`` heredocs)."""
    out, lines = {}, iter(text.splitlines())
    for line in lines:
        name, _, delimiter = line.partition("<<")
        assert delimiter.startswith("ghadelimiter_"), line
        value = []
        for inner in lines:
            if inner == delimiter:
                break
            value.append(inner)
        out[name] = "\n".join(value)
    return out


def task_spec(tmp_path: Path, type: str, name: str = "t", **fields):
    """A task of ``type`` with ``fields``, as a suite in ``tmp_path`` would declare it (first task)."""
    from gate.suite import TaskSpec

    return TaskSpec(name=name, type=type, group="g", fields=fields, models={}, pointer="/tasks/0",
                    suite_dir=tmp_path)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small real slice of the demo data: 300 STS-B pairs; 40 Cranfield test queries over 400 abstracts.

    The corpus holds every document judged for those queries plus the first abstracts
    of the collection as distractors, so the ranking task stays realistic.
    """
    root = tmp_path_factory.mktemp("small")
    write_jsonl(root / "stsb.jsonl", read_jsonl(DEMO_DATA / "stsb" / "test.jsonl")[:300])
    queries = read_jsonl(DEMO_DATA / "cranfield" / "queries-test.jsonl")[:40]
    qids = {q["id"] for q in queries}
    qrels = [r for r in read_jsonl(DEMO_DATA / "cranfield" / "qrels-test.jsonl") if r["query_id"] in qids]
    judged = {r["doc_id"] for r in qrels}
    corpus_all = read_jsonl(DEMO_DATA / "cranfield" / "corpus.jsonl")
    corpus = [d for d in corpus_all if d["id"] in judged]
    for d in corpus_all:
        if len(corpus) >= 400:
            break
        if d["id"] not in judged:
            corpus.append(d)
    write_jsonl(root / "queries.jsonl", queries)
    write_jsonl(root / "corpus.jsonl", corpus)
    write_jsonl(root / "qrels.jsonl", qrels)
    return root


SMALL_SUITE = """\
version: 1
name: small
models:
  baseline: {provider: sentence-transformers, model: default}
  candidate: {provider: sentence-transformers, model: default}
tasks:
  - name: stsb
    type: sts
    group: general
    data: stsb.jsonl
  - name: cranfield
    type: retrieval
    group: target
    queries: queries.jsonl
    corpus: corpus.jsonl
    qrels: qrels.jsonl
    k: [1, 5, 10]
"""


@pytest.fixture(scope="session")
def small_suite(small_data: Path) -> Path:
    path = small_data / "suite.yaml"
    path.write_text(SMALL_SUITE, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def default_embedder():
    from gate.providers import load_embedder
    from gate.suite import ModelSpec

    return load_embedder(ModelSpec("sentence-transformers", "default"))


def write_tiny_lm(folder: Path, text: str) -> Path:
    """A randomly initialised 1-layer GPT-2 with a tiny byte-level tokenizer trained on ``text``, saved into
    ``folder`` (loads in milliseconds)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([text] * 5, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=64,
                               vocab_size=len(tokenizer))).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_finetune(tmp_path_factory) -> Path:
    """A real fine-tune of the default model: 3 short steps of the demo's training loop."""
    from gate.demo import TrainSettings, demo_files, train_candidate

    cache = tmp_path_factory.mktemp("demo-cache")
    settings = TrainSettings(batch_size=8, max_seq_length=64, max_steps=3, learning_rate=1e-4)
    return train_candidate(demo_files(), cache, settings=settings)


@pytest.fixture(scope="session")
def embedding_cache_dir(tmp_path_factory) -> Path:
    """One embedding cache for the CLI tests, so the real model encodes each text once per session."""
    return tmp_path_factory.mktemp("emb-cache")
