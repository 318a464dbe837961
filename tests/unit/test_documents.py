"""Unit tests for gate.documents (strict YAML/JSON + located schema problems), the shipped
schemas, and gate.suite (load_suite, parse_model_spec)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import jsonschema
import pytest

from gate.documents import Document, load_document, load_schema, pointer_of, schema_problems, validate
from gate.errors import BadInput, BadInputs
from gate.suite import ModelSpec, load_suite, parse_model_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCATED = re.compile(r":(\d+):(\d+) \((/[^)]*)\): ")  # file:LINE:COL (/pointer): message


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def raised(fn, path: Path) -> tuple[BadInput, str]:
    """Call fn(path), expect BadInput; return it and its message with the tmp dir shown as <dir>."""
    with pytest.raises(BadInput) as info:
        fn(path)
    return info.value, str(info.value).replace(str(path.parent), "<dir>")


def located(line: str) -> tuple[int, int, str]:
    m = LOCATED.search(line)
    assert m, f"no line:col (pointer) in {line!r}"
    return int(m.group(1)), int(m.group(2)), m.group(3)


def assert_at(problem: str, line: int, columns: set[int], pointer: str) -> None:
    """The problem is located on ``line`` at one of ``columns`` with ``pointer``.

    A mapping value may be located at its key or at the value itself (both point the
    user at the right place), so callers pass both columns, each derived by hand.
    """
    got_line, got_col, got_ptr = located(problem)
    assert (got_line, got_ptr) == (line, pointer), problem
    assert got_col in columns, problem


GOOD_SUITE = """
version: 1
name: support-search
description: a test suite
models:
  baseline: {provider: sentence-transformers, model: ./models/prod}
  candidate: {provider: sentence-transformers, model: ./models/ft-v2, batch_size: 16}
tasks:
  - name: stsb
    type: sts
    group: general
    data: data/stsb.jsonl
  - name: tickets
    type: retrieval
    group: target
    queries: data/queries.jsonl
    corpus: data/corpus.jsonl
    qrels: data/qrels.jsonl
    k: [1, 5, 10]
  - name: plain
    type: sts
    data: /abs/data.jsonl
    models:
      baseline: {provider: sentence-transformers, model: default}
"""


# =========================================================================== load_document


def test_yaml_document_and_positions(tmp_path):
    p = write(tmp_path, "s.yaml", GOOD_SUITE)
    doc = load_document(p)
    assert doc.data["tasks"][1]["k"] == [1, 5, 10]
    # GOOD_SUITE lines: 1 version, 2 name, 3 description, 4 models, 5 baseline, 6 candidate,
    # 7 tasks, 8-11 stsb, 12 "  - name: tickets" -> the key at column 5, the value at 11
    assert doc.where("/tasks/1/name") in ("12:5", "12:11")
    # an unknown pointer falls back to its nearest known parent (/tasks/1 starts at 12:5)
    assert doc.where("/tasks/1/nonexistent") == "12:5"


def test_json_document_by_extension(tmp_path):
    p = write(tmp_path, "t.json", '{\n  "version": 1,\n  "rules": []\n}\n')
    doc = load_document(p)
    assert doc.data == {"version": 1, "rules": []}
    # line 3: '  "rules": []' -> the key at column 3, '[' at column 12
    assert doc.where("/rules") in ("3:3", "3:12")


def test_yaml_syntax_error_reports_line_and_column(tmp_path):
    # line 3 "  bad: 2": the ':' at index 5 -> column 6 ("mapping values are not allowed here")
    p = write(tmp_path, "s.yaml", "version: 1\nname: x\n  bad: 2\n")
    err, msg = raised(load_document, p)
    assert msg.startswith("<dir>/s.yaml:3:6: invalid YAML")
    assert err.location == "3:6"


def test_yaml_unclosed_flow_sequence(tmp_path):
    p = write(tmp_path, "s.yaml", "version: 1\nname: [a, b\n")
    err, msg = raised(load_document, p)
    assert "invalid YAML" in msg
    assert re.match(r"<dir>/s\.yaml:\d+:\d+: ", msg)


def test_json_syntax_error_reports_line_and_column(tmp_path):
    # trailing comma after "x": the parser fails at the '}' on line 4, column 1
    p = write(tmp_path, "t.json", '{\n  "version": 1,\n  "name": "x",\n}\n')
    err, msg = raised(load_document, p)
    assert msg.startswith("<dir>/t.json:4:1: invalid JSON")


def test_yaml_duplicate_key_rejected_at_second_key(tmp_path):
    p = write(tmp_path, "s.yaml", "version: 1\nname: a\nversion: 2\n")
    err, msg = raised(load_document, p)
    assert "duplicate key 'version'" in msg
    assert err.location == "3:1"


def test_yaml_nested_duplicate_key_rejected(tmp_path):
    p = write(tmp_path, "s.yaml", """
        version: 1
        tasks:
          - name: a
            type: sts
            type: retrieval
        """)
    err, msg = raised(load_document, p)
    assert "duplicate key 'type'" in msg
    assert err.location == "5:5"  # the second "type" (line 5, indented 4)


def test_yaml_duplicate_key_in_flow_mapping(tmp_path):
    p = write(tmp_path, "s.yaml", "m: {a: 1, a: 2}\n")
    _, msg = raised(load_document, p)
    assert "duplicate key 'a'" in msg


def test_json_duplicate_key_rejected(tmp_path):
    p = write(tmp_path, "t.json", '{"version": 1, "rules": [], "version": 2}')
    _, msg = raised(load_document, p)
    assert "duplicate key 'version'" in msg
    assert msg.startswith("<dir>/t.json")


def test_json_nested_duplicate_key_rejected(tmp_path):
    p = write(tmp_path, "t.json", '{"version": 1, "rules": [{"metric": "a/b", "min": 0.1, "min": 0.9}]}')
    _, msg = raised(load_document, p)
    assert "duplicate key 'min'" in msg


def test_json_duplicate_key_names_its_line(tmp_path):
    # contracts §1: a bad-input message names the file AND the location. The second
    # "version" is on line 4.
    p = write(tmp_path, "t.json", '{\n  "version": 1,\n  "rules": [],\n  "version": 2\n}\n')
    err, msg = raised(load_document, p)
    assert "duplicate key 'version'" in msg
    assert err.location is not None and err.location.split(":")[0] == "4", msg


@pytest.mark.parametrize("content", ["", "   \n\n\t\n"])
@pytest.mark.parametrize("name", ["s.yaml", "t.json"])
def test_empty_file(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    err, msg = raised(lambda q: load_document(q, "suite file"), p)
    assert msg == f"<dir>/{name}: suite file is empty"


def test_missing_file(tmp_path):
    err, msg = raised(lambda q: load_document(q, "suite file"), tmp_path / "nope.yaml")
    assert msg == "<dir>/nope.yaml: suite file not found"
    assert err.exit_code == 2


def test_directory_instead_of_file(tmp_path):
    d = tmp_path / "dir.yaml"
    d.mkdir()
    _, msg = raised(load_document, d)
    assert "directory" in msg


def test_not_utf8(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_bytes(b"name: \xff\xfe\n")
    _, msg = raised(load_document, p)
    assert "UTF-8" in msg


def test_yaml_tags_are_not_executed(tmp_path):
    p = write(tmp_path, "s.yaml", "x: !!python/object/apply:os.system ['true']\n")
    _, msg = raised(load_document, p)
    assert "invalid YAML" in msg


def test_pointer_of_escapes_rfc6901():
    assert pointer_of(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"
    assert pointer_of([]) == ""


# =========================================================================== shipped schemas


@pytest.mark.parametrize("name", ["suite", "thresholds"])
def test_shipped_schema_is_valid_draft_2020_12(name):
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")


def test_demo_suite_validates():
    path = REPO_ROOT / "examples" / "demo" / "suite.yaml"
    suite = load_suite(path)
    assert suite.tasks


def test_contract_example_suite_validates(tmp_path):
    suite = load_suite(write(tmp_path, "suite.yaml", GOOD_SUITE))
    assert [t.name for t in suite.tasks] == ["stsb", "tickets", "plain"]


# =========================================================================== schema problems


def suite_problems(tmp_path: Path, text: str, name: str = "suite.yaml") -> list[str]:
    doc = load_document(write(tmp_path, name, text))
    return [str(p).replace(str(tmp_path), "<dir>") for p in schema_problems(doc, "suite")]


def test_valid_suite_has_no_problems(tmp_path):
    assert suite_problems(tmp_path, GOOD_SUITE) == []


def test_three_problems_all_reported_in_document_order(tmp_path):
    # Keys are deliberately in an order different from the schema's (version, name, tasks),
    # so the problems come out in *document* order only if they are sorted by position.
    problems = suite_problems(tmp_path, """
        tasks:
          - name: a
            type: topic-model
        name: "bad/name"
        version: 2
        """)
    assert len(problems) == 3, problems
    # line 3 "    type: topic-model" -> key at column 5, value at 11;
    # line 4 'name: "bad/name"' -> key at 1, value at 7; line 5 "version: 2" -> key at 1, value at 10
    assert_at(problems[0], 3, {5, 11}, "/tasks/0/type")
    assert_at(problems[1], 4, {1, 7}, "/name")
    assert_at(problems[2], 5, {1, 10}, "/version")
    assert all(p.startswith("<dir>/suite.yaml:") for p in problems)


def test_validate_raises_bad_inputs_listing_every_problem(tmp_path):
    doc = load_document(write(tmp_path, "suite.yaml", 'version: 2\nname: "bad/name"\ntasks: []\n'))
    with pytest.raises(BadInputs) as info:
        validate(doc, "suite")
    # version const, name pattern, tasks minItems
    assert len(info.value.problems) == 3
    assert len(str(info.value).splitlines()) == 3
    assert info.value.exit_code == 2


def test_unknown_top_level_key_with_hint(tmp_path):
    problems = suite_problems(tmp_path, """
        version: 1
        name: s
        taks:
          - name: a
            type: sts
            data: a.jsonl
        """)
    joined = "\n".join(problems)
    assert "unknown key 'taks'; did you mean 'tasks'?" in joined
    assert "missing required key 'tasks'" not in joined  # one root cause (the typo), one message


def test_unknown_task_type(tmp_path):
    problems = suite_problems(tmp_path, """
        version: 1
        name: s
        tasks:
          - name: a
            type: clustring
        """)
    assert len(problems) == 1, problems
    # line 5 "    type: clustring" -> key at column 5, value at 11
    assert_at(problems[0], 5, {5, 11}, "/tasks/0/type")
    assert '"sts"' in problems[0] and '"retrieval"' in problems[0]
    assert '"clustring"' in problems[0]


def test_task_name_with_upper_case_rejected(tmp_path):
    problems = suite_problems(tmp_path, """
        version: 1
        name: s
        tasks:
          - name: Tickets
            type: sts
            data: a.jsonl
        """)
    assert len(problems) == 1, problems
    # line 4 "  - name: Tickets" -> key at column 5, value at 11
    assert_at(problems[0], 4, {5, 11}, "/tasks/0/name")
    assert "lower-case" in problems[0]
    assert '"Tickets"' in problems[0]


def test_retrieval_task_missing_qrels(tmp_path):
    problems = suite_problems(tmp_path, """
        version: 1
        name: s
        tasks:
          - name: r
            type: retrieval
            queries: q.jsonl
            corpus: c.jsonl
        """)
    # Exactly one problem: qrels is missing. queries/corpus are legitimate keys of a
    # retrieval task and must not be reported as "unknown".
    assert len(problems) == 1, problems
    assert "missing required key 'qrels'" in problems[0]
    assert located(problems[0])[2] == "/tasks/0"


def test_k_with_a_string_item(tmp_path):
    problems = suite_problems(tmp_path, """
        version: 1
        name: s
        tasks:
          - name: r
            type: retrieval
            queries: q.jsonl
            corpus: c.jsonl
            qrels: r.jsonl
            k: [1, "5"]
        """)
    # Exactly one problem, at the bad item: line 9 '    k: [1, "5"]' -> '"5"' at column 12
    # (a sequence item has no key, so only the item's own column is right).
    assert len(problems) == 1, problems
    assert_at(problems[0], 9, {12}, "/tasks/0/k/1")
    assert 'expected integer, got string "5"' in problems[0]


def test_unknown_key_in_task_reported(tmp_path):
    problems = suite_problems(tmp_path, """
        version: 1
        name: s
        tasks:
          - name: a
            type: sts
            data: a.jsonl
            dta: b.jsonl
        """)
    assert len(problems) == 1, problems
    assert located(problems[0])[2] == "/tasks/0/dta"
    assert "unknown key 'dta'; did you mean 'data'?" in problems[0]


def test_sts_task_missing_data(tmp_path):
    problems = suite_problems(tmp_path, """
        version: 1
        name: s
        tasks:
          - name: a
            type: sts
        """)
    assert len(problems) == 1, problems
    assert "missing required key 'data'" in problems[0]


def test_model_problems_located(tmp_path):
    problems = suite_problems(tmp_path, """
        version: 1
        name: s
        models:
          baseline: {provider: sentence-transformer, model: x}
        tasks:
          - name: a
            type: sts
            data: a.jsonl
        """)
    assert len(problems) == 1, problems
    assert located(problems[0])[2] == "/models/baseline/provider"
    assert "did you mean 'sentence-transformers'?" in problems[0]


def test_json_suite_problems_are_located(tmp_path):
    data = {"version": 1, "name": "s", "tasks": [{"name": "A", "type": "sts", "data": "a.jsonl"}]}
    problems = suite_problems(tmp_path, json.dumps(data, indent=2), name="suite.json")
    assert len(problems) == 1, problems
    # json.dumps(indent=2): 1 '{', 2 version, 3 name, 4 '"tasks": [', 5 '    {',
    # 6 '      "name": "A",' -> the key at column 7, the value at 15
    assert_at(problems[0], 6, {7, 15}, "/tasks/0/name")


def test_document_error_helper_uses_nearest_parent(tmp_path):
    doc = Document(path=tmp_path / "x.yaml", data={}, positions={"": (1, 1), "/a": (2, 3)})
    assert doc.error("/a/b/c", "boom").location == "2:3 (/a/b/c)"
    assert doc.error("", "boom").location == "1:1"


# =========================================================================== load_suite


def test_load_suite_types_and_paths(tmp_path):
    path = write(tmp_path, "suite.yaml", GOOD_SUITE)
    suite = load_suite(path)
    assert suite.name == "support-search"
    assert suite.description == "a test suite"
    stsb, tickets, plain = suite.tasks
    assert (stsb.type, stsb.group) == ("sts", "general")
    assert plain.group == "default"  # no group given
    assert tickets.fields == {"queries": "data/queries.jsonl", "corpus": "data/corpus.jsonl",
                              "qrels": "data/qrels.jsonl", "k": [1, 5, 10]}
    # paths are relative to the suite file; absolute ones are kept where the suite may leave its root
    assert tickets.path("qrels") == tmp_path / "data" / "qrels.jsonl"
    with pytest.raises(BadInput, match="leads outside the repository root"):
        plain.path("data")
    assert load_suite(path, confine=False).tasks[2].path("data") == Path("/abs/data.jsonl")
    assert tickets.pointer == "/tasks/1"


def test_load_suite_models_and_overrides(tmp_path):
    suite = load_suite(write(tmp_path, "suite.yaml", GOOD_SUITE))
    assert suite.models["candidate"] == ModelSpec("sentence-transformers", "./models/ft-v2", (("batch_size", 16),))
    assert suite.models["baseline"].resolve_path() == tmp_path / "models" / "prod"
    stsb, _, plain = suite.tasks
    # task override > command line > suite default
    override = ModelSpec("sentence-transformers", "/cli/model")
    resolved = suite.resolved_models(plain, {"baseline": override, "candidate": override})
    assert resolved["baseline"].model == "default"  # the task's own
    # the command line beats the suite; a command-line model of the same provider keeps the suite's options
    assert resolved["candidate"] == ModelSpec("sentence-transformers", "/cli/model", (("batch_size", 16),))
    other = ModelSpec("openai", "gpt-x")
    assert suite.resolved_models(plain, {"candidate": other})["candidate"] == other  # other provider: none kept
    assert suite.resolved_models(stsb)["candidate"].model == "./models/ft-v2"  # suite default


def test_resolved_models_missing_role_is_bad_input(tmp_path):
    suite = load_suite(write(tmp_path, "suite.yaml", """
        version: 1
        name: s
        tasks:
          - name: a
            type: sts
            data: a.jsonl
        """))
    with pytest.raises(BadInput) as info:
        suite.resolved_models(suite.tasks[0])
    assert "--baseline" in str(info.value)


def test_duplicate_task_names_rejected_at_second(tmp_path):
    path = write(tmp_path, "suite.yaml", """
        version: 1
        name: s
        tasks:
          - name: a
            type: sts
            data: a.jsonl
          - name: b
            type: sts
            data: b.jsonl
          - name: a
            type: sts
            data: c.jsonl
        """)
    err, msg = raised(load_suite, path)
    assert isinstance(err, BadInputs)
    assert len(err.problems) == 1
    # the second "a" is on line 10: "  - name: a" -> the key at column 5, the value at 11
    assert msg.startswith("<dir>/suite.yaml:")
    assert_at(msg, 10, {5, 11}, "/tasks/2/name")
    assert "duplicate task name 'a'" in msg
    assert "task 0" in msg  # points back to the first use


def test_load_suite_schema_error_is_bad_inputs(tmp_path):
    path = write(tmp_path, "suite.yaml", "version: 1\nname: s\ntasks: []\n")
    err, msg = raised(load_suite, path)
    assert isinstance(err, BadInputs)
    assert "/tasks" in msg


def test_load_suite_missing_file(tmp_path):
    _, msg = raised(load_suite, tmp_path / "nope.yaml")
    assert msg == "<dir>/nope.yaml: suite file not found"


def test_load_suite_top_level_not_a_mapping(tmp_path):
    _, msg = raised(load_suite, write(tmp_path, "suite.yaml", "- a\n- b\n"))
    assert "expected object" in msg


# =========================================================================== parse_model_spec


def test_parse_model_spec_good(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_model_spec("sentence-transformers:./models/ft-v2")
    assert (spec.provider, spec.model) == ("sentence-transformers", "./models/ft-v2")
    assert spec.spec == "sentence-transformers:./models/ft-v2"
    assert spec.resolve_path() == tmp_path / "models" / "ft-v2"  # relative to the cwd


def test_parse_model_spec_keeps_colons_in_model():
    # only the first colon separates the provider
    assert parse_model_spec("sentence-transformers:C:/models/x").model == "C:/models/x"


def test_parse_model_spec_default_model():
    assert parse_model_spec("sentence-transformers:default").model == "default"


@pytest.mark.parametrize("text", ["sentence-transformers", "./models/ft-v2", "", "sentence-transformers:"])
def test_parse_model_spec_without_model(text):
    with pytest.raises(BadInput) as info:
        parse_model_spec(text, option="--candidate")
    assert str(info.value).startswith("--candidate: expected PROVIDER:MODEL")
    assert repr(text) in str(info.value)


def test_parse_model_spec_unknown_provider():
    with pytest.raises(BadInput) as info:
        parse_model_spec("no-such-provider:some/model", option="--baseline")
    msg = str(info.value)
    assert msg.startswith("--baseline: unknown provider 'no-such-provider'")
    assert "sentence-transformers" in msg  # lists what is accepted
