"""Messages that say what they found (issue 16, items 2 and 3): the exact text of each.

The commands' own messages about a file of the wrong kind (`gate check`, `render`, `comment`,
`human export/import`) are tested in tests/integration/test_cli.py and test_human_cli.py; the rules'
did-you-means in tests/unit/test_catalogue.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import task_spec, write_jsonl
from gate.documents import load_document, schema_problems
from gate.errors import BadInput
from gate.results import load_results
from gate.suite import parse_model_spec
from gate.tasks import load_task


def problems(path: Path, schema: str) -> list[str]:
    return [str(p) for p in schema_problems(load_document(path), schema)]


# =========================================================================== data rows name what they have


def test_a_row_without_a_column_names_the_columns_it_has(tmp_path):
    write_jsonl(tmp_path / "sts.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 1}])
    with pytest.raises(BadInput) as err:
        load_task(task_spec(tmp_path, "sts", data="sts.jsonl"))
    assert str(err.value) == (f"{tmp_path / 'sts.jsonl'}:1: missing 'score' (expected a number); "
                              "the row has: sentence1, sentence2, label")


def test_a_csv_without_a_column_names_the_header_and_the_near_miss(tmp_path):
    (tmp_path / "sts.csv").write_text("sentence1,sentence2,Score\na,b,1\n", encoding="utf-8")
    with pytest.raises(BadInput) as err:
        load_task(task_spec(tmp_path, "sts", data="sts.csv"))
    assert str(err.value) == (f"{tmp_path / 'sts.csv'}:2: missing 'score' (expected a number); "
                              "the header has: sentence1, sentence2, Score (is Score meant to be 'score'?)")


def test_a_null_value_is_not_called_missing_and_odd_keys_are_quoted(tmp_path):
    write_jsonl(tmp_path / "sts.jsonl", [{"sentence1": "a", "sentence2": "b", "score": None}])
    with pytest.raises(BadInput) as err:
        load_task(task_spec(tmp_path, "sts", data="sts.jsonl"))
    assert str(err.value) == f"{tmp_path / 'sts.jsonl'}:1: field 'score': expected a number, got null"
    write_jsonl(tmp_path / "q.jsonl", [{"query id": "1", "text": "a"}])
    write_jsonl(tmp_path / "c.jsonl", [{"id": "d", "text": "b"}])
    write_jsonl(tmp_path / "r.jsonl", [{"query_id": "1", "doc_id": "d", "relevance": 1}])
    with pytest.raises(BadInput) as err:
        load_task(task_spec(tmp_path, "retrieval", queries="q.jsonl", corpus="c.jsonl", qrels="r.jsonl"))
    assert str(err.value) == f"{tmp_path / 'q.jsonl'}:1: missing 'id' (expected a string or integer id); " \
                             "the row has: 'query id', text"


def test_a_case_without_a_prompt_names_what_it_has(tmp_path):
    write_jsonl(tmp_path / "cases.jsonl", [{"id": "c1", "input": "hello", "expected": "hi"}])
    with pytest.raises(BadInput) as err:
        load_task(task_spec(tmp_path, "generation", cases="cases.jsonl", scorers=["exact_match"]))
    assert str(err.value).endswith("missing 'messages' or 'prompt'; expected one of them; "
                                   "the row has: id, input, expected")


# =========================================================================== one root cause, one message


def test_an_unknown_task_type_gives_one_message_with_its_did_you_mean(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("version: 1\nname: s\ntasks:\n  - name: stsb\n    type: similarity\n    group: general\n"
                     "    data: sts.jsonl\n", encoding="utf-8")
    assert problems(suite, "suite") == [
        f"{suite}:5:5 (/tasks/0/type): got string \"similarity\"; did you mean 'sts'? (expected one of \"sts\", "
        "\"retrieval\", \"generation\", \"perplexity\", \"pairwise\", \"pairs\", \"geometry\", \"holdout\", "
        "\"classification\", \"clustering\")"]


def test_a_misspelled_type_gets_the_close_one(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("version: 1\nname: s\ntasks:\n  - {name: r, type: retreival, queries: q.jsonl}\n")
    (msg,) = problems(suite, "suite")
    assert msg.startswith(f"{suite}:4:") and "got string \"retreival\"; did you mean 'retrieval'? (expected" in msg


def test_a_misspelled_condition_gives_only_the_did_you_mean(tmp_path):
    th = tmp_path / "t.json"
    th.write_text('{"version": 1, "rules": [\n  {"metric": "*/ndcg@10", "min_detla": 0.05, "relative": true}\n]}')
    assert problems(th, "thresholds") == [
        f"{th}:2:27 (/rules/0/min_detla): unknown key 'min_detla'; did you mean 'min_delta'?"]


def test_problems_with_other_causes_are_all_kept(tmp_path):
    th = tmp_path / "t.json"
    th.write_text(json.dumps({"version": 1, "rules": [{"metric": "a/b", "min": 1, "max": 2, "severity": "warning"}]}))
    msgs = problems(th, "thresholds")
    assert any("exactly one of the keys" in m for m in msgs) and any("did you mean 'warn'" in m for m in msgs)


# =========================================================================== the wrong kind of file


@pytest.mark.parametrize("name, text, what", [
    ("suite.yaml", "version: 1\nname: s\ntasks: []\n", "a suite file"),
    ("suite.json", '{"version": 1, "name": "s", "tasks": []}', "a suite file"),
    ("thresholds.json", '{"version": 1, "rules": []}', "a thresholds file"),
    ("report.md", '<!-- gate-report suite="s" -->\n## ✅ gate: PASS · s\n', "a report (report.md)"),
    ("README.md", "# hello\n\n- a: b\n", "a Markdown file"),
    ("examples.jsonl", '{"task": "a"}\n', "an examples.jsonl (per-example outputs)"),
    ("shard.json", '{"format": "gate-shard-v1"}',
     "a shard's shard.json (combine the shards with `gate merge`, then pass its results.json)"),
])
def test_a_file_that_is_not_results_is_named_for_what_it_is(tmp_path, name, text, what):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput) as err:
        load_results(path)
    assert str(err.value) == f"{path}: this is {what}, expected a results.json (written by `gate run`, " \
                             "e.g. gate-out/results.json)"


def test_json_that_is_no_gate_file_is_one_message(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    with pytest.raises(BadInput) as err:
        load_results(path)
    assert str(err.value) == f"{path}: expected a results.json (written by `gate run`, e.g. gate-out/results.json)"


# =========================================================================== model references (item 3)


def test_a_model_that_is_neither_a_folder_nor_a_hub_id_names_the_forms_it_may_take(tmp_path, monkeypatch):
    from gate.providers import check_model

    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInput) as err:
        check_model(parse_model_spec("sentence-transformers:nope", "--candidate"), secrets=False)
    assert str(err.value) == (
        f"--candidate: model sentence-transformers:nope: model folder '{tmp_path / 'nope'}' does not exist; "
        "expected a local sentence-transformers model folder (e.g. ./models/ft-v2), 'default' (the embedded "
        "model) or a Hugging Face Hub model ORG/NAME[@REVISION]")


def test_a_hub_id_reads_as_one_and_is_not_a_missing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_model_spec("sentence-transformers:sentence-transformers/all-MiniLM-L6-v2", "--candidate")
    assert str(spec.hub) == "sentence-transformers/all-MiniLM-L6-v2"
