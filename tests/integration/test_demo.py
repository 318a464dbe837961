"""The demo: a real (tiny) fine-tune, its cache, and the `gate demo` command end to end on a small copy."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

import gate.demo
from gate.cli import cli
from gate.demo import DemoFiles, TrainSettings, batches, demo_files, train_candidate
from gate.providers.fingerprint import fingerprint_dir
from gate.providers.sentence_transformers import default_model_path
from tests.conftest import read_jsonl

pytestmark = pytest.mark.model

TINY = TrainSettings(batch_size=8, max_seq_length=64, max_steps=3, learning_rate=1e-4)


def test_tiny_finetune_is_a_real_new_model(tiny_finetune):
    assert fingerprint_dir(tiny_finetune) != fingerprint_dir(default_model_path())
    meta = json.loads((tiny_finetune / "gate-demo.json").read_text())
    assert meta["max_steps"] == 3 and meta["pairs"] == 754
    # evaluated like the baseline: the training-time sequence length is not kept
    from sentence_transformers import SentenceTransformer

    base = json.loads((default_model_path() / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert SentenceTransformer(str(tiny_finetune), device="cpu").max_seq_length == base != TINY.max_seq_length


def test_cached_candidate_is_reused_without_training(tiny_finetune, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("the cached candidate must be reused")

    monkeypatch.setattr(gate.demo, "train", no_training)
    messages: list[str] = []
    again = train_candidate(demo_files(), tiny_finetune.parent.parent, settings=TINY, log=messages.append)
    assert again == tiny_finetune
    assert "using the cached fine-tune" in messages[0]


def test_progress_lines_estimate_the_time_left():
    from gate.demo import duration, progress_line

    assert progress_line(1, 48, 0.6683, 36.0) == \
        "  training step 1/48: loss 0.6683, 36 s so far, about 28 min 12 s left"
    assert progress_line(10, 48, 1.8151, 245.4) == \
        "  training step 10/48: loss 1.8151, 4 min 05 s so far, about 15 min 33 s left"
    assert progress_line(48, 48, 0.0986, 1289.0) == "  training step 48/48: loss 0.0986, 21 min 29 s so far, done"
    assert duration(3725) == "1 h 02 min" and duration(-1) == "0 s"


def test_batches_never_repeat_a_query_or_document_and_cover_the_pairs():
    pairs = [(f"q{i % 7}", f"d{i % 11}") for i in range(60)]
    pairs = list(dict.fromkeys(pairs))
    plan = batches(pairs, 5, seed=3)
    for batch in plan:
        assert len({q for q, _ in batch}) == len(batch) == len({d for _, d in batch})
        assert 2 <= len(batch) <= 5
    used = [p for b in plan for p in b]
    assert len(used) == len(set(used)) and set(used) <= set(pairs)
    # only a tail that cannot form a batch of two distinct queries and documents is left out
    left = [p for p in pairs if p not in set(used)]
    assert all(a[0] == b[0] or a[1] == b[1] for a in left for b in left)


def test_real_training_pairs_are_all_used():
    pairs = gate.demo.training_pairs(demo_files())
    plan = batches(pairs, TrainSettings().batch_size, seed=0)
    assert sum(len(b) for b in plan) == len(pairs) == 754


def test_train_split_is_disjoint_from_the_evaluation_queries():
    files = demo_files()
    train = {q["id"] for q in read_jsonl(files.train_queries)}
    test = {q["id"] for q in read_jsonl(files.root / "data" / "cranfield" / "queries-test.jsonl")}
    assert train and test and not train & test
    assert {r["query_id"] for r in read_jsonl(files.train_qrels)} <= train


def test_demo_command_end_to_end_on_a_small_copy(small_data, tmp_path, monkeypatch, tiny_finetune):
    """`gate demo` as a user runs it: train (here: reuse the tiny fine-tune), run, report, exit code."""
    root = tmp_path / "demo"
    shutil.copytree(demo_files().root, root)
    # the evaluation data of the copy is the small slice, so this test stays fast
    shutil.copy(small_data / "stsb.jsonl", root / "data" / "stsb" / "test.jsonl")
    for name, target in (("queries.jsonl", "queries-test.jsonl"), ("qrels.jsonl", "qrels-test.jsonl")):
        shutil.copy(small_data / name, root / "data" / "cranfield" / target)
    monkeypatch.setattr(gate.demo, "demo_files", lambda: DemoFiles(root))
    monkeypatch.setattr(gate.demo, "TrainSettings", lambda: TINY)
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "out"), "--cache",
                                      str(tiny_finetune.parent.parent)], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output  # whatever the honest verdict is
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["verdict"] in ("pass", "fail")
    assert result.output.count("gate: ") >= 1 and results["verdict"].upper() in result.output
    assert results["models"]["candidate"]["spec"] == f"sentence-transformers:{tiny_finetune}"
    assert [r["name"] for r in results["rules"]][0] == "target improves by at least 5%"
    assert (tmp_path / "out" / "report.md").read_text().startswith("<!-- gate-report")
