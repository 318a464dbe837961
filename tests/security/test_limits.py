"""Unbounded work from hostile files (issue 13, item 8): every case ends within seconds, as bad input.

A case that hung or exhausted memory before the fix runs in a subprocess, with its memory capped and a
generous time guard: a regression fails the test instead of taking the machine with it. Timings are
never asserted; messages are, by their key phrases (docs/limits.md).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import cli
from gate.errors import BadInput

#: seconds a subprocess may run before it counts as hung
GUARD = float(os.environ.get("GATE_LIMITS_TEST_GUARD", "60"))
MEMORY = 4 * 1024**3
LIMIT_VARS = ["GATE_MAX_LINE_BYTES", "GATE_MAX_DOCUMENT_BYTES", "GATE_MAX_DATA_BYTES", "GATE_MAX_DEPTH",
              "GATE_MAX_RULES", "GATE_MAX_YAML_VALUES"]
DEPTH_MSG = ("nested too deeply, over the limit of 64 levels of nested lists and objects "
             "(set GATE_MAX_DEPTH to raise it)")

STS_SUITE = """\
version: 1
name: s
models:
  baseline: {provider: sentence-transformers, model: default}
  candidate: {provider: sentence-transformers, model: default}
tasks:
  - {name: sts, type: sts, data: sts.jsonl}
"""
STS_ROW = '{"sentence1": "A man plays a guitar.", "sentence2": "A man plays music.", "score": %d}'


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch):
    for var in LIMIT_VARS:
        monkeypatch.delenv(var, raising=False)


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                              capture_output=True, timeout=GUARD, preexec_fn=_cap_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {GUARD:g} s: {args}")


def gate(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``gate ARGS`` in a subprocess (memory capped, time guarded)."""
    return _run(["-m", "gate", *args], cwd, env)


def python(cwd: Path, code: str) -> subprocess.CompletedProcess:
    """``code`` in a subprocess (memory capped, time guarded)."""
    return _run(["-c", code], cwd)


def invoke(*args: object, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def sts_suite(tmp_path: Path, *lines: str) -> Path:
    """An STS suite whose data file holds five good rows and then ``lines``."""
    (tmp_path / "sts.jsonl").write_text("\n".join([STS_ROW % score for score in range(5)] + list(lines)) + "\n",
                                        encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text(STS_SUITE, encoding="utf-8")
    return suite


def generation_suite(tmp_path: Path, rows: list[dict], scorers: list[str], **task) -> Path:
    """A suite with one generation task on an endpoint nothing listens on: a model call could not succeed."""
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
             "api_key_env": "GATE_TEST_API_KEY"}
    task = {"name": "gen", "type": "generation", "cases": "cases.jsonl", "scorers": scorers, **task}
    suite = tmp_path / "suite.yaml"
    suite.write_text("version: 1\nname: g\nmodels:\n"
                     f"  baseline: {json.dumps(model)}\n  candidate: {json.dumps(model)}\n"
                     f"tasks:\n  - {json.dumps(task)}\n", encoding="utf-8")
    return suite


def thresholds(tmp_path: Path, n_rules: int, name: str = "thresholds.json") -> Path:
    path = tmp_path / name
    rules = [{"metric": f"sts/m{i}", "max_drop": 0.01} for i in range(n_rules)]
    path.write_text(json.dumps({"version": 1, "rules": rules}), encoding="utf-8")
    return path


# ------------------------------------------------------------------ regular expressions


def test_regex_scorer_runs_a_catastrophic_pattern_in_linear_time(tmp_path):
    result = python(tmp_path, """if True:
        from gate.cases import Case
        from gate.llm import ChatResponse
        from gate.scorers import score_regex
        case = Case(id="c", line=1, messages=(), expected=r"^(a+)+$", category=None, schema=None, tools=None,
                    expected_tool_call=None, expects_tool_call=False)
        print(score_regex(case, ChatResponse(text="a" * 40 + "!"))["regex"],
              score_regex(case, ChatResponse(text="a" * 40))["regex"],
              score_regex(case, ChatResponse(text="xx aaa"))["regex"])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.0", "1.0", "0.0"]


def test_regex_scorer_searches_anywhere(tmp_path):
    from gate.cases import Case
    from gate.llm import ChatResponse
    from gate.scorers import score_regex

    case = Case(id="c", line=1, messages=(), expected=r"(?i)pa(r)is\b", category=None, schema=None, tools=None,
                expected_tool_call=None, expects_tool_call=False)
    assert score_regex(case, ChatResponse(text="It is PARIS, of course."))["regex"] == 1.0
    assert score_regex(case, ChatResponse(text="Parisian"))["regex"] == 0.0


@pytest.mark.parametrize("pattern, reason", [(r"(\w+) \1", r"invalid escape sequence: \1"),
                                             (r"Paris(?= France)", "invalid perl operator: (?=")])
def test_pattern_re2_cannot_run_is_bad_input_before_any_model_call(tmp_path, pattern, reason):
    rows = [{"id": "ok", "prompt": "Capital of France?", "expected": "Paris"},
            {"id": "re", "prompt": "Capital of France?", "expected": pattern}]
    suite = generation_suite(tmp_path, rows, ["regex"])
    expected = (f"cases.jsonl:2: field 'expected': the scorer 'regex' cannot run this pattern: it runs patterns on "
                f"RE2, a linear-time engine without backreferences or lookaround ({reason}); see docs/limits.md")
    result = invoke("validate", suite)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    # gate run stops at the same line: the endpoint (where nothing listens) is never called
    run = gate(tmp_path, "run", "suite.yaml", "--out", "out", env={"GATE_TEST_API_KEY": "k"})
    assert run.returncode == 2, run.stderr
    assert expected in run.stderr and "Traceback" not in run.stderr


def test_catastrophic_pattern_in_a_tool_schema_is_checked_in_linear_time(tmp_path):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}}}}
    rows = [{"id": "t", "prompt": "Look it up", "tools": [tool],
             "expected_tool_call": {"name": "lookup", "arguments": {"code": "a" * 40 + "!"}}}]
    generation_suite(tmp_path, rows, ["tool_call"])
    result = gate(tmp_path, "validate", "suite.yaml")
    assert result.returncode == 2, result.stderr
    assert ("cases.jsonl:1: field 'expected_tool_call.arguments.code': does not match the parameters of tool "
            "'lookup'") in result.stderr


def test_schema_pattern_re2_cannot_run_is_bad_input(tmp_path):
    rows = [{"id": "j", "prompt": "JSON please", "schema": {"type": "string", "pattern": r"(a)\1"}}]
    suite = generation_suite(tmp_path, rows, ["json_schema"])
    result = invoke("validate", suite)
    assert result.exit_code == 2, result.output
    assert ("cases.jsonl:1: field 'schema': invalid JSON Schema at 'pattern': the pattern '(a)\\\\1' cannot run on "
            "RE2, the linear-time regular expression engine gate uses (invalid escape sequence: \\1)") in result.output


def test_catastrophic_metric_glob_selects_in_linear_time(tmp_path):
    result = python(tmp_path, """if True:
        from gate.thresholds import Rule, evaluate
        rule = Rule("min", 0.5, metric="*a" * 30 + "b")
        checks = evaluate([rule], {"t/" + "a" * 60: {"candidate": 1.0}, "t/ab": {"candidate": 1.0}}, {})
        print([c.status for c in checks], checks[0].message.startswith("no metric in the results matches"))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['error'] True"


def test_json_fence_of_a_long_answer_is_found_in_linear_time(tmp_path):
    result = python(tmp_path, """if True:
        from gate.scorers import strict_json
        print(strict_json("```" + "\\n" * 200_000 + "x"), strict_json('```json\\n{"a": 1}\\n```'))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(False, None) (True, {'a': 1})"


# ------------------------------------------------------------------ YAML aliases


BILLION_LAUGHS = "version: 1\nname: s\nlol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10)) + "tasks: *l9\n"


def test_billion_laughs_suite_is_bad_input(tmp_path):
    (tmp_path / "suite.yaml").write_text(BILLION_LAUGHS, encoding="utf-8")
    result = gate(tmp_path, "validate", "suite.yaml")
    assert result.returncode == 2, result.stderr
    assert ("suite.yaml:7:7: with its aliases expanded, this value has too many values, over the limit of 100,000 "
            "values per YAML file, each use of an alias counting what it refers to in full (set "
            "GATE_MAX_YAML_VALUES to raise it)") in result.stderr
    run = gate(tmp_path, "run", "suite.yaml", "--out", "out")
    assert run.returncode == 2 and "GATE_MAX_YAML_VALUES" in run.stderr, run.stderr


def test_aliases_expanding_to_too_much_text_are_bad_input(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text('version: 1\nname: s\nbig: &big "' + "x" * 100_000 + '"\n'
                    f"tasks: [{', '.join(['*big'] * 200)}]\n", encoding="utf-8")
    result = gate(tmp_path, "validate", "suite.yaml")
    assert result.returncode == 2, result.stderr
    assert ("suite.yaml:4:8: with its aliases expanded, this value holds 20,000,000 characters of text, over the "
            "limit of 16,777,216 bytes per document") in result.stderr


def test_small_anchors_and_aliases_still_work(tmp_path):
    (tmp_path / "sts.jsonl").write_text(STS_ROW % 1 + "\n", encoding="utf-8")
    path = tmp_path / "suite.yaml"
    path.write_text(STS_SUITE.replace("models:\n  baseline: {", "models:\n  baseline: &m {")
                    .replace("candidate: {provider: sentence-transformers, model: default}", "candidate: *m"),
                    encoding="utf-8")
    result = invoke("validate", "--no-data", path)
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------ nesting depth


def test_deep_json_data_line_is_bad_input(tmp_path):
    sts_suite(tmp_path, '{"sentence1": "x", "sentence2": "y", "score": 1, "extra": ' + "[" * 100_000
              + "]" * 100_000 + "}")
    result = gate(tmp_path, "validate", "suite.yaml")
    assert result.returncode == 2, result.stderr
    assert f"sts.jsonl:6: {DEPTH_MSG.replace('deeply,', 'deeply (column 122),')}" in result.stderr  # the 64th "["
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("name", ["suite.json", "thresholds.json"])
def test_deep_json_document_is_bad_input(tmp_path, name):
    key = "tasks" if name == "suite.json" else "rules"
    (tmp_path / name).write_text('{"version": 1,\n "' + key + '": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                 encoding="utf-8")
    result = gate(tmp_path, "validate", name)
    assert result.returncode == 2, result.stderr
    assert f"{name}:2:74: {DEPTH_MSG}" in result.stderr  # the 64th "[" after the "{"


def test_deep_yaml_suite_is_bad_input(tmp_path):
    (tmp_path / "suite.yaml").write_text("version: 1\nname: s\ntasks: " + "[" * 100_000 + "]" * 100_000 + "\n",
                                         encoding="utf-8")
    result = gate(tmp_path, "validate", "suite.yaml")
    assert result.returncode == 2, result.stderr
    assert f"suite.yaml:3:71: {DEPTH_MSG}" in result.stderr  # the 64th "[" in the top-level mapping


def test_aliases_nesting_too_deep_are_bad_input(tmp_path):
    (tmp_path / "suite.yaml").write_text("version: 1\nname: s\ninner: &in " + "[" * 40 + "]" * 40 + "\n"
                                         "tasks: " + "[" * 40 + "*in" + "]" * 40 + "\n", encoding="utf-8")
    result = invoke("validate", tmp_path / "suite.yaml")
    assert result.exit_code == 2, result.output
    assert "with its aliases expanded, nested too deeply, over the limit of 64 levels" in result.output


def test_deep_examples_line_is_bad_input(tmp_path):
    from gate.results import read_examples

    path = tmp_path / "examples.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n", encoding="utf-8")
    with pytest.raises(BadInput) as info:
        read_examples(path)
    assert str(info.value) == f"{path}:2: {DEPTH_MSG.replace('deeply,', 'deeply (column 79),')}"  # the 64th "["


def test_depth_raised_past_the_stack_is_still_bad_input(tmp_path):
    sts_suite(tmp_path, '{"sentence1": "x", "sentence2": "y", "score": 1, "extra": ' + "[" * 100_000
              + "]" * 100_000 + "}")
    result = gate(tmp_path, "validate", "suite.yaml", env={"GATE_MAX_DEPTH": "1000000"})
    assert result.returncode == 2, result.stderr
    assert "sts.jsonl:6: nested too deeply for Python to read (GATE_MAX_DEPTH is 1,000,000" in result.stderr


# ------------------------------------------------------------------ sizes


def test_over_long_data_line_is_bad_input(tmp_path):
    long_row = json.dumps({"sentence1": "x" * (1024 * 1024), "sentence2": "y", "score": 1})
    sts_suite(tmp_path, long_row)
    result = gate(tmp_path, "validate", "suite.yaml")
    assert result.returncode == 2, result.stderr
    assert (f"sts.jsonl:6: the line has {len(long_row):,} bytes, over the limit of 1,048,576 bytes per line of a "
            "data file (set GATE_MAX_LINE_BYTES to raise it)") in result.stderr
    raised = invoke("validate", tmp_path / "suite.yaml", env={"GATE_MAX_LINE_BYTES": str(2 * 1024 * 1024)})
    assert raised.exit_code == 0, raised.output


def test_over_long_cases_and_examples_lines_are_bad_input(tmp_path, monkeypatch):
    from gate.results import read_examples

    rows = [{"id": "a", "prompt": "p", "expected": "x"}, {"id": "b", "prompt": "p" * 3000, "expected": "x"}]
    suite = generation_suite(tmp_path, rows, ["contains"])
    result = invoke("validate", suite, env={"GATE_MAX_LINE_BYTES": "2000"})
    assert result.exit_code == 2, result.output
    assert (f"cases.jsonl:2: the line has {len(json.dumps(rows[1])):,} bytes, over the limit of 2,000 bytes per line"
            in result.output)
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"id": 1}\n{"text": "' + "x" * 3000 + '"}\n', encoding="utf-8")
    monkeypatch.setenv("GATE_MAX_LINE_BYTES", "2000")
    with pytest.raises(BadInput) as info:
        read_examples(examples)
    assert str(info.value) == (f"{examples}:2: the line has more than 2,000 bytes, over the limit of 2,000 bytes "
                               "per line of a data file (set GATE_MAX_LINE_BYTES to raise it)")


def test_over_large_document_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(STS_SUITE, encoding="utf-8")
    with path.open("r+b") as fh:
        fh.truncate(16 * 1024 * 1024 + 1)  # sparse: its size is known without a byte being read
    result = gate(tmp_path, "validate", "suite.yaml")
    assert result.returncode == 2, result.stderr
    assert ("suite.yaml: the file has 16,777,217 bytes, over the limit of 16,777,216 bytes per document (suite, "
            "thresholds or results file) (set GATE_MAX_DOCUMENT_BYTES to raise it)") in result.stderr


def test_over_large_data_file_is_refused_before_it_is_read(tmp_path):
    sts_suite(tmp_path)
    with (tmp_path / "sts.jsonl").open("r+b") as fh:
        fh.truncate(4 * 1024**3 + 1)  # sparse; read into memory, it would be 4 GiB
    result = gate(tmp_path, "validate", "suite.yaml")
    assert result.returncode == 2, result.stderr
    assert ("sts.jsonl: the STS data file has 4,294,967,297 bytes, over the limit of 4,294,967,296 bytes per data "
            "file (set GATE_MAX_DATA_BYTES to raise it)") in result.stderr


def test_document_and_data_limits_can_be_lowered_and_raised(tmp_path):
    suite = sts_suite(tmp_path)
    low = invoke("validate", suite, env={"GATE_MAX_DATA_BYTES": "100"})
    assert low.exit_code == 2 and "over the limit of 100 bytes per data file" in low.output, low.output
    low = invoke("validate", suite, env={"GATE_MAX_DOCUMENT_BYTES": "100"})
    assert low.exit_code == 2 and "over the limit of 100 bytes per document" in low.output, low.output
    assert invoke("validate", suite, env={"GATE_MAX_DOCUMENT_BYTES": "1000", "GATE_MAX_DATA_BYTES": "1000"}
                  ).exit_code == 0


# ------------------------------------------------------------------ threshold rules


def test_too_many_rules_is_bad_input(tmp_path):
    path = thresholds(tmp_path, 1001)
    result = gate(tmp_path, "validate", "thresholds.json")
    assert result.returncode == 2, result.stderr
    assert ("thresholds.json:1:16 (/rules): the file has 1,001 rules, over the limit of 1,000 rules per thresholds "
            "file (set GATE_MAX_RULES to raise it)") in result.stderr
    assert invoke("validate", path, env={"GATE_MAX_RULES": "1001"}).exit_code == 0
    assert invoke("validate", thresholds(tmp_path, 1000, "ok.json")).exit_code == 0


def test_too_many_rules_stop_a_run_before_any_model_is_loaded(tmp_path):
    suite = sts_suite(tmp_path)
    thresholds(tmp_path, 100_000)
    result = gate(tmp_path, "run", suite.name, "--thresholds", "thresholds.json", "--out", "out")
    assert result.returncode == 2, result.stderr
    assert "the file has 100,000 rules, over the limit of 1,000 rules" in result.stderr
    assert not (tmp_path / "out" / "results.json").exists()


# ------------------------------------------------------------------ the variables


def test_raising_the_depth_limit_admits_deeper_files(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text('{"version": 1, "name": "s", "x": ' + "[" * 80 + "]" * 80 + ', "tasks": []}', encoding="utf-8")
    assert "GATE_MAX_DEPTH" in invoke("validate", "--kind", "suite", path).output
    raised = invoke("validate", "--kind", "suite", path, env={"GATE_MAX_DEPTH": "81"})
    assert "GATE_MAX_DEPTH" not in raised.output and "unknown key 'x'" in raised.output


@pytest.mark.parametrize("var", LIMIT_VARS)
@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", "4M", "１０"])
def test_bad_variable_value_is_bad_input(tmp_path, var, value):
    path = thresholds(tmp_path, 1)
    result = invoke("validate", path, env={var: value})
    assert result.exit_code == 2, result.output
    assert (f"environment variable {var}: expected a whole number of at least 1 (default "
            in result.output), result.output
    assert f"got {value!r}" in result.output and "Traceback" not in result.output
