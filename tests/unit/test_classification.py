"""The ``classification`` task: a logistic-regression probe on embeddings, checked against scikit-learn.

Real data: BANKING77 rows of examples/classification (the committed subset), embedded by the real
default model where a test says ``model``; the other tests use fixed random vectors, which are
enough to check the bookkeeping (bad input, select, determinism, the batched macro F1).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from gate.documents import load_schema
from gate.errors import EXIT_BAD_INPUT, BadInput
from gate.runner import EmbeddingTable, normalize
from gate.stats import paired_delta
from gate.suite import TaskSpec
from gate.tasks.classification import METRICS, ClassificationTask, macro_f1, macro_f1_rows
from tests.conftest import ROOT, read_jsonl, write_jsonl

EXAMPLE = ROOT / "examples" / "classification"
BANKING77 = ROOT / "examples" / "tool-calling" / "source" / "banking77"  # committed, byte-equal to the shared copy
TRAIN_ROWS = read_jsonl(EXAMPLE / "data" / "intent-train.jsonl")
TEST_ROWS = read_jsonl(EXAMPLE / "data" / "intent-test.jsonl")
#: a small real slice: the first 12 intents of labels.json (near neighbours among them: card_arrival /
#: card_delivery_estimate, exchange_rate / exchange_via_app), 10 train and 5 test texts each (180 texts to embed)
LABELS = sorted(json.loads((BANKING77 / "labels.json").read_text(encoding="utf-8"))[:12])


def first(rows: list[dict], per_label: int) -> list[dict]:
    out, taken = [], {}
    for r in rows:
        if r["label"] in LABELS and taken.get(r["label"], 0) < per_label:
            taken[r["label"]] = taken.get(r["label"], 0) + 1
            out.append(r)
    return out


SMALL_TRAIN, SMALL_TEST = first(TRAIN_ROWS, 10), first(TEST_ROWS, 5)


def spec(folder: Path, **fields) -> TaskSpec:
    fields = {"train": "train.jsonl", "test": "test.jsonl", **fields}
    return TaskSpec(name="intent", type="classification", group="g", fields=fields, models={}, pointer="/tasks/0",
                    suite_dir=folder)


def load(folder: Path, train: list[dict], test: list[dict], **fields) -> ClassificationTask:
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    return ClassificationTask.load(spec(folder, **fields))


def random_embed(texts: list[str], dim: int = 16) -> EmbeddingTable:
    """Fixed random unit vectors per text: a stand-in model with no knowledge at all."""
    unique = list(dict.fromkeys(texts))
    rng = np.random.default_rng(7)
    return EmbeddingTable(unique, normalize(rng.normal(size=(len(unique), dim)).astype(np.float32)))


def metric(name: str):
    return next(m for m in METRICS if m.name == name)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> ClassificationTask:
    return load(tmp_path_factory.mktemp("cls"), SMALL_TRAIN, SMALL_TEST)


@pytest.fixture(scope="module")
def real_embed(small, default_embedder) -> EmbeddingTable:
    texts = list(dict.fromkeys(small.texts()))
    return EmbeddingTable(texts, normalize(default_embedder.encode(texts)))


# ------------------------------------------------------------------ loading


def test_load_reads_both_splits(small):
    assert small.data.n == len(SMALL_TEST) == 60 and len(small.train_texts) == 120
    assert small.classes == LABELS and small.shardable
    assert small.texts() == [r["text"] for r in SMALL_TRAIN] + [r["text"] for r in SMALL_TEST]
    assert small.data.example_ids[0] == "1" and small.data.example_text[0] == SMALL_TEST[0]
    assert set(small.data.data_sha256) == {"train", "test"}
    assert [small.classes[c] for c in small.test_codes] == [r["label"] for r in SMALL_TEST]
    assert small.example_score == ("correct", True)
    assert [(m.name, m.higher_is_better) for m in small.metrics] == [("accuracy", True), ("macro_f1", True)]
    assert small.data.notes == []


def test_notes_say_when_test_texts_are_in_train_or_classes_lack_tests(tmp_path):
    train = [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}, {"text": "c", "label": "y"},
             {"text": "d", "label": "y"}, {"text": "e", "label": "z"}, {"text": "f", "label": "z"}]
    task = load(tmp_path, train, [{"text": "a", "label": "x"}, {"text": "g", "label": "y"}])
    assert task.data.notes == ["1 of 2 test texts also occur in the train split",
                               "1 of the 3 train classes have no test example"]


# ------------------------------------------------------------------ bad input


def bad(tmp_path, train, test, **fields) -> BadInput:
    with pytest.raises(BadInput) as info:
        load(tmp_path, train, test, **fields)
    assert info.value.exit_code == EXIT_BAD_INPUT
    return info.value


TWO = [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}, {"text": "c", "label": "y"},
       {"text": "d", "label": "y"}]
TEST = [{"text": "e", "label": "x"}, {"text": "f", "label": "y"}]


@pytest.mark.parametrize("which, row, message", [
    ("train", {"text": "z"}, "missing 'label' (expected a non-empty string); the row has: text"),
    ("train", {"text": "z", "label": ""}, "field 'label': expected a non-empty string"),
    ("train", {"text": "z", "label": "  "}, "field 'label': expected a non-empty string"),
    ("train", {"text": "z", "label": 3}, "field 'label': expected a string, got int"),
    ("train", {"text": "", "label": "x"}, "field 'text': expected a non-empty string"),
    ("test", {"text": "z", "label": None}, "field 'label': expected a non-empty string, got null"),
    ("test", {"text": "z", "label": ""}, "field 'label': expected a non-empty string"),
])
def test_a_missing_or_empty_label_or_text_names_the_file_and_line(tmp_path, which, row, message):
    train, test = list(TWO), list(TEST)
    (train if which == "train" else test).insert(1, row)
    err = bad(tmp_path, train, test)
    assert str(err) == f"{tmp_path / (which + '.jsonl')}:2: {message}"


def test_a_class_with_one_training_example_names_its_line(tmp_path):
    err = bad(tmp_path, TWO + [{"text": "solo", "label": "lonely"}], TEST)
    assert str(err) == (f"{tmp_path / 'train.jsonl'}:5: label 'lonely' has only this one training example; "
                        "every class needs at least 2")


def test_a_test_label_absent_from_train_names_its_line(tmp_path):
    err = bad(tmp_path, TWO, TEST + [{"text": "g", "label": "x"}, {"text": "h", "label": "unseen"}])
    assert str(err) == (f"{tmp_path / 'test.jsonl'}:4: label 'unseen' does not occur in the train split "
                        "(train.jsonl); the probe can only predict labels it was trained on")


def test_fewer_than_two_classes(tmp_path):
    err = bad(tmp_path, TWO[:2], TEST[:1])
    assert str(err) == (f"{tmp_path / 'train.jsonl'}: every row has the label 'x'; "
                        "a classifier needs at least 2 classes")


def test_missing_files_and_csv_lines(tmp_path):
    with pytest.raises(BadInput, match="train.jsonl"):
        ClassificationTask.load(spec(tmp_path))
    (tmp_path / "train.csv").write_text("text,label\na,x\nb,x\nc,y\n", encoding="utf-8")
    write_jsonl(tmp_path / "test.jsonl", TEST)
    with pytest.raises(BadInput) as info:
        ClassificationTask.load(spec(tmp_path, train="train.csv"))
    assert str(info.value).startswith(f"{tmp_path / 'train.csv'}:4: label 'y' has only this one")


@pytest.mark.parametrize("field, value, expected", [
    ("C", 0, "expected a positive number"), ("C", -1.0, "expected a positive number"),
    ("C", True, "expected a positive number"), ("C", "1", "expected a positive number"),
    ("C", float("inf"), "expected a positive number"),
    ("max_iter", 0, "expected a positive integer"), ("max_iter", 1.5, "expected a positive integer"),
    ("max_iter", False, "expected a positive integer"),
])
def test_bad_probe_settings_point_at_the_field(tmp_path, field, value, expected):
    err = bad(tmp_path, TWO, TEST, **{field: value})
    assert str(err).startswith(f"/tasks/0/{field}: {expected}")


# ------------------------------------------------------------------ macro F1


def test_macro_f1_by_hand():
    # class 0: TP 1, 2 gold, 1 predicted -> 2/3; class 1: TP 2, 2 gold, 3 predicted -> 4/5
    assert macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # a class only predicted counts with F1 0; a class in neither is left out of the mean
    assert macro_f1(np.array([0, 0]), np.array([0, 5])) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(np.array([3, 3]), np.array([3, 3])) == 1.0
    assert np.isnan(macro_f1(np.array([], np.int64), np.array([], np.int64)))
    rows = macro_f1_rows(np.array([[0, 0, 1, 1], [0, 0, 0, 0]]), np.array([[0, 1, 1, 1], [0, 5, 5, 0]]))
    assert rows == pytest.approx([(2 / 3 + 4 / 5) / 2, (2 / 3 + 0) / 2])
    assert np.isnan(macro_f1_rows(np.zeros((2, 0), np.int64), np.zeros((2, 0), np.int64))).all()


def test_macro_f1_rows_equal_scikit_learn_on_resamples():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 30, size=300)
    pred = np.where(rng.random(300) < 0.6, label, rng.integers(0, 30, size=300))
    idx = rng.integers(0, 300, size=(400, 300))
    idx[:5, :] = idx[:5, :1]  # resamples of one repeated example
    rows = macro_f1_rows(label[idx], pred[idx])
    for r in range(len(idx)):
        expected = f1_score(label[idx[r]], pred[idx[r]], labels=np.union1d(label[idx[r]], pred[idx[r]]),
                            average="macro", zero_division=0.0)
        assert rows[r] == pytest.approx(expected, abs=1e-12)


def test_metrics_do_not_depend_on_example_order(small):
    arrays = small.score(random_embed(small.texts())).arrays
    perm = np.random.default_rng(3).permutation(small.data.n)
    for m in METRICS:
        assert m.compute({k: v[perm] for k, v in arrays.items()}) == pytest.approx(m.compute(arrays), abs=1e-12)


def test_batched_macro_f1_gives_the_same_statistics(small):
    embed = random_embed(small.texts())
    base = small.score(embed).arrays
    cand = ClassificationTask(small.data, small.classes, small.train_texts, small.train_codes, small.test_texts,
                              small.test_codes, c=10.0, max_iter=1000).score(embed).arrays
    m = metric("macro_f1")
    looped = paired_delta(m.compute, base, cand, resamples=300, seed=1)
    batched = paired_delta(m.compute, base, cand, resamples=300, seed=1, batch=m.batch)
    assert batched.delta == looped.delta
    assert batched.ci == pytest.approx(looped.ci, abs=1e-12) and batched.p_value == looped.p_value


# ------------------------------------------------------------------ scoring, select, determinism


def test_scores_are_arrays_of_the_test_examples(small):
    s = small.score(random_embed(small.texts()))
    assert set(s.arrays) == {"correct", "pred", "label"}
    assert all(len(v) == small.data.n for v in s.arrays.values())
    assert s.arrays["pred"].dtype == np.int64 and s.arrays["label"].dtype == np.int64
    assert np.array_equal(s.arrays["correct"], (s.arrays["pred"] == s.arrays["label"]).astype(float))
    assert [e["predicted"] for e in s.extras] == [small.classes[p] for p in s.arrays["pred"]]


def test_select_scores_equal_the_full_scores_at_those_indices(small):
    embed = random_embed(small.texts())
    full = small.score(embed)
    idx = [int(i) for i in np.random.default_rng(5).permutation(small.data.n)[:17]]
    part = small.select(idx)
    assert part.data.n == 17 and part.data.example_ids == [small.data.example_ids[i] for i in idx]
    assert part.data.example_text == [small.data.example_text[i] for i in idx]
    assert part.train_texts == small.train_texts and part.data.data_sha256 == small.data.data_sha256
    assert part.texts() == small.train_texts + [small.test_texts[i] for i in idx]
    scored = part.score(embed)
    for key, value in scored.arrays.items():
        assert np.array_equal(value, full.arrays[key][idx])
    assert scored.extras == [full.extras[i] for i in idx]
    # shards in order merge back into the full run
    shards = [small.select(list(range(a, min(a + 25, small.data.n)))).score(embed) for a in range(0, small.data.n, 25)]
    for key in full.arrays:
        assert np.array_equal(np.concatenate([s.arrays[key] for s in shards]), full.arrays[key])
    assert small.data.n == 60 and small.select([]).score(embed).arrays["correct"].size == 0
    ranged = small.select(range(3, 9)).score(embed)  # the runner passes a range
    assert np.array_equal(ranged.arrays["pred"], full.arrays["pred"][3:9])


def test_scoring_is_deterministic(small):
    embed = random_embed(small.texts())
    a, b = small.score(embed), small.score(embed)
    assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)


def test_an_unconverged_probe_is_a_note_not_a_warning(tmp_path):
    task = load(tmp_path, SMALL_TRAIN, SMALL_TEST, max_iter=1)
    task.score(random_embed(task.texts()))  # filterwarnings=error: a ConvergenceWarning would fail here
    assert task.data.notes == ["the logistic-regression probe stopped at max_iter=1 before converging on a model's "
                               "embeddings; raise max_iter for a stable probe"]
    task.score(random_embed(task.texts()))
    assert len(task.data.notes) == 1


@pytest.mark.model
def test_metrics_equal_scikit_learn_on_real_embeddings(small, real_embed):
    s = small.score(real_embed)
    x_train = np.asarray(real_embed(small.train_texts), dtype=np.float64)
    x_test = np.asarray(real_embed(small.test_texts), dtype=np.float64)
    probe = LogisticRegression(C=1.0, max_iter=1000, solver="lbfgs", random_state=0)
    pred = probe.fit(x_train, [r["label"] for r in SMALL_TRAIN]).predict(x_test)
    gold = [r["label"] for r in SMALL_TEST]
    assert [small.classes[p] for p in s.arrays["pred"]] == list(pred)
    values = {m.name: m.compute(s.arrays) for m in METRICS}
    assert values["accuracy"] == pytest.approx(accuracy_score(gold, pred), abs=1e-12)
    assert values["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"), abs=1e-12)
    assert 0.6 < values["accuracy"] < 1.0  # a real model separates these intents well, not perfectly
    # select on real embeddings, and determinism of the whole path
    idx = [59, 0, 31, 7]
    assert np.array_equal(small.select(idx).score(real_embed).arrays["pred"], s.arrays["pred"][idx])
    assert np.array_equal(small.score(real_embed).arrays["pred"], s.arrays["pred"])


# ------------------------------------------------------------------ the example suite


def load_build_data():
    module_spec = importlib.util.spec_from_file_location("classification_build_data", EXAMPLE / "build_data.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_example_data_reproduces_from_build_data(tmp_path):
    build = load_build_data()
    build.main(["--source", str(BANKING77), "--out", str(tmp_path)])
    for name in ("intent-train.jsonl", "intent-test.jsonl", "clusters.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / "data" / name).read_bytes(), name
    assert len(TRAIN_ROWS) == 77 * 20 and len(TEST_ROWS) == 77 * 10
    source = (EXAMPLE / "data" / "SOURCE.md").read_text(encoding="utf-8")
    assert source.startswith((BANKING77 / "SOURCE.md").read_text(encoding="utf-8"))
    assert "build_data.py" in source


def test_example_suite_tasks_load(capsys):
    suite = yaml.safe_load((EXAMPLE / "suite.yaml").read_text(encoding="utf-8"))
    task = next(t for t in suite["tasks"] if t["type"] == "classification")
    fields = {k: v for k, v in task.items() if k not in ("name", "type", "group")}
    loaded = ClassificationTask.load(TaskSpec(name=task["name"], type="classification", group=task["group"],
                                              fields=fields, models={}, pointer="/tasks/0", suite_dir=EXAMPLE))
    assert loaded.data.n == 770 and len(loaded.classes) == 77 and loaded.data.notes == []
    thresholds = json.loads((EXAMPLE / "thresholds.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(load_schema("thresholds")).validate(thresholds)
    ids = {f"{t['name']}/{m}" for t in suite["tasks"] for m in
           (("accuracy", "macro_f1") if t["type"] == "classification" else ("v_measure", "ari"))}
    for rule in thresholds["rules"]:
        assert any(fnmatch.fnmatchcase(i, rule["metric"]) for i in ids), rule
