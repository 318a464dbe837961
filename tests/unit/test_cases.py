"""Unit tests for gate.cases: every bad row is reported as file:line with the field named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gate.cases import Case, check_schema, check_tools, read_cases
from gate.errors import BadInput

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def write(tmp_path: Path, *rows, name: str = "cases.jsonl") -> Path:
    """One line per item: dicts are dumped, strings are written verbatim."""
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def bad(path: Path, scorers=(), **kwargs) -> str:
    """The BadInput message, with the tmp dir shown as <dir>."""
    with pytest.raises(BadInput) as info:
        read_cases(path, list(scorers), **kwargs)
    assert info.value.exit_code == 2
    assert info.value.where == str(path)
    return str(info.value).replace(str(path.parent), "<dir>")


def row(**fields) -> dict:
    return {"id": "c1", "prompt": "What is the capital of France?", **fields}


# ------------------------------------------------------------------ good files


def test_good_file_parsed(tmp_path):
    path = write(
        tmp_path,
        row(expected="Paris", category="geo"),
        "",
        {"id": 7, "messages": [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Weather in Oslo?"}],
         "tools": [WEATHER], "expected_tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}},
         "note": "extra keys are ignored"},
        {"id": "j", "prompt": "Name a person as JSON", "schema": PERSON},
    )
    cs = read_cases(path, [])
    assert cs.path == path
    assert cs.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [c.id for c in cs.cases] == ["c1", "7", "j"]
    assert [c.line for c in cs.cases] == [1, 3, 4]
    first = cs.cases[0]
    assert first == Case(id="c1", line=1, messages=({"role": "user", "content": "What is the capital of France?"},),
                         expected="Paris", category="geo", schema=None, tools=None, expected_tool_call=None,
                         expects_tool_call=False)
    second = cs.cases[1]
    assert second.messages[0] == {"role": "system", "content": "Be brief."}
    assert second.tools == (WEATHER,)
    assert second.expected_tool_call == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert second.expects_tool_call
    assert cs.cases[2].schema == PERSON


def test_prompt_becomes_one_user_message(tmp_path):
    cs = read_cases(write(tmp_path, row()), [])
    assert cs.cases[0].messages == ({"role": "user", "content": "What is the capital of France?"},)


def test_system_prepended_unless_case_has_one(tmp_path):
    path = write(tmp_path, row(), {"id": "s", "messages": [{"role": "system", "content": "Own."},
                                                            {"role": "user", "content": "Hi"}]})
    cs = read_cases(path, [], system="Answer in one word.")
    assert cs.cases[0].messages == ({"role": "system", "content": "Answer in one word."},
                                    {"role": "user", "content": "What is the capital of France?"})
    assert cs.cases[1].messages[0] == {"role": "system", "content": "Own."}
    assert len(cs.cases[1].messages) == 2


def test_task_defaults_for_schema_and_tools(tmp_path):
    own_schema = {"type": "array"}
    path = write(tmp_path, row(expected_tool_call={"name": "get_time"}),
                 {"id": "b", "prompt": "x", "schema": own_schema, "tools": [CLOCK], "expected_tool_call": None})
    cs = read_cases(path, ["json_schema", "tool_call"], schema=PERSON, tools=[WEATHER, CLOCK])
    a, b = cs.cases
    assert a.schema == PERSON and a.tools == (WEATHER, CLOCK)
    assert a.expected_tool_call == {"name": "get_time", "arguments": {}}  # arguments default to {}
    assert b.schema == own_schema and b.tools == (CLOCK,)
    assert b.expected_tool_call is None and b.expects_tool_call


def test_conversation_with_tool_turns(tmp_path):
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 3}"},
    ]
    cs = read_cases(write(tmp_path, {"id": 1, "messages": messages, "expected": "3 degrees"}), ["contains"])
    assert cs.cases[0].messages == tuple(messages)


def test_null_expected_tool_call_needs_no_tools(tmp_path):
    cs = read_cases(write(tmp_path, row(expected_tool_call=None)), ["tool_call"])
    assert cs.cases[0].expects_tool_call and cs.cases[0].expected_tool_call is None


def test_every_scorer_satisfied(tmp_path):
    path = write(tmp_path, row(expected=r"\bParis\b", schema=PERSON, tools=[WEATHER],
                               expected_tool_call={"name": "get_weather", "arguments": {"city": "Paris"}}))
    scorers = ["exact_match", "contains", "regex", "rouge_l", "bleu", "json_schema", "tool_call"]
    assert len(read_cases(path, scorers).cases) == 1


# ------------------------------------------------------------------ file-level problems


def test_empty_file(tmp_path):
    assert bad(write(tmp_path, "", "  ")) == "<dir>/cases.jsonl: cases file has no cases; " \
        "expected JSON Lines rows with 'id' and 'messages' or 'prompt'"


def test_missing_file(tmp_path):
    assert bad(tmp_path / "cases.jsonl", what="cases of task 'qa'") == \
        "<dir>/cases.jsonl: cases of task 'qa' not found"


def test_invalid_json_line(tmp_path):
    msg = bad(write(tmp_path, row(), '{"id": 2, "prompt": '))
    assert msg.startswith("<dir>/cases.jsonl:2: invalid JSON")


def test_row_not_an_object(tmp_path):
    assert bad(write(tmp_path, row(), "[1, 2]")) == "<dir>/cases.jsonl:2: expected a JSON object, got list"


# ------------------------------------------------------------------ id


@pytest.mark.parametrize("value, expected", [
    (None, "missing 'id'"), (True, "field 'id': expected a string or integer id, got boolean"),
    (1.5, "field 'id': expected a string or integer id, got number"), ("", "field 'id': expected a non-empty id"),
])
def test_bad_id(tmp_path, value, expected):
    assert expected in bad(write(tmp_path, row(), {**row(), "id": value}))
    assert bad(write(tmp_path, row(), {**row(), "id": value})).startswith("<dir>/cases.jsonl:2: ")


def test_missing_id(tmp_path):
    assert bad(write(tmp_path, {"prompt": "hi"})) == \
        "<dir>/cases.jsonl:1: missing 'id'; expected a string or integer id"


def test_duplicate_id_names_both_lines(tmp_path):
    msg = bad(write(tmp_path, {"id": 5, "prompt": "a"}, {"id": "x", "prompt": "b"}, "", {"id": "5", "prompt": "c"}))
    assert msg == "<dir>/cases.jsonl:4: duplicate id '5': also on line 1; ids must be unique"


# ------------------------------------------------------------------ messages / prompt


def test_both_messages_and_prompt(tmp_path):
    msg = bad(write(tmp_path, row(messages=[{"role": "user", "content": "x"}])))
    assert msg == "<dir>/cases.jsonl:1: expected exactly one of 'messages' or 'prompt', got both"


def test_neither_messages_nor_prompt(tmp_path):
    assert bad(write(tmp_path, {"id": 1})) == \
        "<dir>/cases.jsonl:1: missing 'messages' or 'prompt'; expected one of them; the row has: id"


@pytest.mark.parametrize("prompt", ["", "   ", 3, None])
def test_bad_prompt(tmp_path, prompt):
    msg = bad(write(tmp_path, row(prompt=prompt)))
    assert "<dir>/cases.jsonl:1: field 'prompt': expected a non-empty string" in msg


@pytest.mark.parametrize("messages, expected", [
    ([], "field 'messages': expected a non-empty array of messages, got an empty array"),
    ("hi", "field 'messages': expected a non-empty array of messages, got string"),
    (["hi"], "field 'messages[0]': expected an object with 'role' and 'content', got string"),
    ([{"role": "human", "content": "x"}], "field 'messages[0].role': expected one of system, user, assistant, "
                                          "tool, got 'human'"),
    ([{"role": "user"}], "field 'messages[0].content': expected a string, got nothing"),
    ([{"role": "system", "content": "s"}, {"role": "user", "content": ["x"]}],
     "field 'messages[1].content': expected a string, got array"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": []}, {"role": "tool", "content": "r"}],
     "field 'messages[1].tool_calls': expected a non-empty array of objects"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "ok"}],
     "field 'messages': the last message must have role 'user' or 'tool', got 'assistant'"),
    ([{"role": "system", "content": "x"}],
     "field 'messages': the last message must have role 'user' or 'tool', got 'system'"),
])
def test_bad_messages(tmp_path, messages, expected):
    assert bad(write(tmp_path, {"id": 1, "messages": messages})) == f"<dir>/cases.jsonl:1: {expected}"


# ------------------------------------------------------------------ expected / category


def test_expected_must_be_a_string(tmp_path):
    assert bad(write(tmp_path, row(expected=42))) == \
        "<dir>/cases.jsonl:1: field 'expected': expected a string, got integer"


@pytest.mark.parametrize("scorer", ["exact_match", "contains", "regex", "rouge_l", "bleu"])
def test_scorer_needs_expected(tmp_path, scorer):
    assert bad(write(tmp_path, row(expected="Paris"), {"id": 2, "prompt": "x"}), [scorer]) == \
        f"<dir>/cases.jsonl:2: missing 'expected'; the scorer {scorer!r} needs it"
    assert bad(write(tmp_path, row(expected=" ")), [scorer]) == \
        f"<dir>/cases.jsonl:1: field 'expected': expected a non-empty string; the scorer {scorer!r} needs it"


def test_expected_not_needed_without_text_scorers(tmp_path):
    assert read_cases(write(tmp_path, row()), ["json_schema"], schema=PERSON).cases[0].expected is None


def test_regex_must_compile(tmp_path):
    msg = bad(write(tmp_path, row(expected="Paris"), row(id=2, expected="(unclosed")), ["regex"])
    assert msg == ("<dir>/cases.jsonl:2: field 'expected': invalid regular expression for the scorer 'regex': "
                   "missing ), unterminated subpattern at position 0")
    # the same text is fine for a scorer that does not compile it
    assert len(read_cases(write(tmp_path, row(expected="(unclosed")), ["contains"]).cases) == 1


@pytest.mark.parametrize("category", ["Edge", "edge case", "-edge", "", "a" * 65, "é", 3])
def test_bad_category(tmp_path, category):
    msg = bad(write(tmp_path, row(category=category)))
    assert msg.startswith("<dir>/cases.jsonl:1: field 'category': expected 1-64 lowercase letters")
    assert "pass_rate[category]" in msg and repr(category) in msg


@pytest.mark.parametrize("category", ["edge_case", "0", "a-b_c", "a" * 64])
def test_good_category(tmp_path, category):
    assert read_cases(write(tmp_path, row(category=category)), []).cases[0].category == category


# ------------------------------------------------------------------ schema


def test_schema_must_be_valid(tmp_path):
    msg = bad(write(tmp_path, row(), row(id=2, schema={"type": "strin"})))
    assert msg.startswith("<dir>/cases.jsonl:2: field 'schema': invalid JSON Schema at 'type': 'strin' is not valid")


def test_schema_must_be_an_object(tmp_path):
    assert bad(write(tmp_path, row(schema=[1]))) == \
        "<dir>/cases.jsonl:1: field 'schema': expected a JSON Schema object, got array"


def test_schema_draft_honoured_and_unknown_draft_rejected(tmp_path):
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "dependencies": {"a": ["b"]}}
    assert read_cases(write(tmp_path, row(schema=draft7)), ["json_schema"]).cases[0].schema == draft7
    msg = bad(write(tmp_path, row(schema={"$schema": "https://example.com/nope", "type": "object"})))
    assert msg == ("<dir>/cases.jsonl:1: field 'schema': '$schema' 'https://example.com/nope' names no JSON Schema "
                   "draft that jsonschema knows")


def test_json_schema_scorer_needs_schema(tmp_path):
    assert bad(write(tmp_path, row()), ["json_schema"]) == (
        "<dir>/cases.jsonl:1: missing 'schema'; the scorer 'json_schema' needs it (in the row or as the task's "
        "default)")


def test_check_schema_for_task_level_values():
    assert check_schema(PERSON, "suite.yaml", "12:5") is PERSON
    with pytest.raises(BadInput) as info:
        check_schema({"type": 5}, "suite.yaml", "12:5")
    assert str(info.value).startswith("suite.yaml:12:5: field 'schema': invalid JSON Schema at 'type': 5 is not valid")


# ------------------------------------------------------------------ tools


@pytest.mark.parametrize("tools, expected", [
    ({"type": "function"}, "field 'tools': expected a non-empty array of tool definitions, got object"),
    ([], "field 'tools': expected a non-empty array of tool definitions, got an empty array"),
    ([WEATHER, "get_time"], "field 'tools[1]': expected a function tool"),
    ([{"type": "retrieval", "function": {"name": "x"}}], "field 'tools[0]': expected a function tool"),
    ([{"type": "function", "name": "x"}], "field 'tools[0]': expected a function tool"),
    ([WEATHER, {"type": "function", "function": {"name": "get weather"}}],
     "field 'tools[1].function.name': expected 1-64 letters, digits, '_' or '-', got 'get weather'"),
    ([{"type": "function", "function": {}}],
     "field 'tools[0].function.name': expected 1-64 letters, digits, '_' or '-', got None"),
    ([{"type": "function", "function": {"name": "a" * 65}}], "field 'tools[0].function.name': expected 1-64"),
    ([WEATHER, WEATHER], "field 'tools[1].function.name': duplicate tool name 'get_weather'"),
    ([{"type": "function", "function": {"name": "f", "description": 1}}],
     "field 'tools[0].function.description': expected a string, got integer"),
    ([CLOCK, {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
     "field 'tools[1].function.parameters': expected a schema with \"type\": \"object\""),
    ([{"type": "function", "function": {"name": "f", "parameters": {"properties": {}}}}],
     "field 'tools[0].function.parameters': expected a schema with \"type\": \"object\""),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "required": "city"}}}],
     "field 'tools[0].function.parameters': invalid JSON Schema at 'required': 'city' is not of type 'array'"),
    ([{"type": "function", "function": {"name": "f", "parameters": "object"}}],
     "field 'tools[0].function.parameters': expected a JSON Schema object, got string"),
])
def test_bad_tools(tmp_path, tools, expected):
    assert bad(write(tmp_path, row(), row(id=2, tools=tools))).startswith(f"<dir>/cases.jsonl:2: {expected}")


def test_check_tools_for_task_level_values():
    assert check_tools([WEATHER, CLOCK], "suite.yaml", "/tasks/0/tools") == (WEATHER, CLOCK)
    with pytest.raises(BadInput) as info:
        check_tools([CLOCK, {"type": "function"}], "suite.yaml", "8:3 (/tasks/0/tools)")
    assert str(info.value).startswith("suite.yaml:8:3 (/tasks/0/tools): field 'tools[1]': expected a function tool")


def test_tool_with_extra_keys_passes_through(tmp_path):
    tool = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    assert read_cases(write(tmp_path, row(tools=[tool])), []).cases[0].tools == (tool,)


# ------------------------------------------------------------------ expected_tool_call


@pytest.mark.parametrize("call, expected", [
    ("get_weather", "field 'expected_tool_call': expected null or an object"),
    ({"arguments": {}}, "field 'expected_tool_call.name': expected a non-empty string, got None"),
    ({"name": ""}, "field 'expected_tool_call.name': expected a non-empty string, got ''"),
    ({"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"},
     "field 'expected_tool_call.arguments': expected an object, got string"),
    ({"name": "get_weather", "arguments": None}, "field 'expected_tool_call.arguments': expected an object, got null"),
    ({"name": "get_wether", "arguments": {}},
     "field 'expected_tool_call.name': 'get_wether' is not one of the tools ('get_weather', 'get_time')"),
])
def test_bad_expected_tool_call(tmp_path, call, expected):
    path = write(tmp_path, row(), row(id=2, tools=[WEATHER, CLOCK], expected_tool_call=call))
    assert bad(path).startswith(f"<dir>/cases.jsonl:2: {expected}")


def test_expected_tool_call_checked_against_task_tools(tmp_path):
    path = write(tmp_path, row(expected_tool_call={"name": "get_weather"}))
    assert bad(path, ["tool_call"], tools=[CLOCK]) == (
        "<dir>/cases.jsonl:1: field 'expected_tool_call.name': 'get_weather' is not one of the tools ('get_time')")


def test_tool_call_scorer_needs_expected_tool_call(tmp_path):
    assert bad(write(tmp_path, row(tools=[WEATHER])), ["tool_call"]) == (
        "<dir>/cases.jsonl:1: missing 'expected_tool_call'; the scorer 'tool_call' needs it "
        "(null means the model must not call a tool)")


def test_tool_call_scorer_needs_tools(tmp_path):
    assert bad(write(tmp_path, row(expected_tool_call={"name": "get_weather"})), ["tool_call"]) == (
        "<dir>/cases.jsonl:1: missing 'tools'; the scorer 'tool_call' needs it (in the row or as the task's "
        "default) when 'expected_tool_call' is not null")


def test_tool_message_without_its_call_id_is_bad_input(tmp_path):
    history = [{"role": "user", "content": "weather in Oslo?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
               {"role": "tool", "content": "sunny"}]
    msg = bad(write(tmp_path, {"id": "a", "messages": history}))
    assert msg.startswith("<dir>/cases.jsonl:1: ") and "messages[2].tool_call_id" in msg


@pytest.mark.parametrize("call, field", [
    ({"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}, "'id'"),
    ({"id": "c1", "function": {"name": "get_weather", "arguments": "{}"}}, "'type'"),
    ({"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {}}}, "'function'"),
])
def test_earlier_tool_calls_must_have_the_api_shape(tmp_path, call, field):
    history = [{"role": "user", "content": "weather?"}, {"role": "assistant", "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    msg = bad(write(tmp_path, {"id": "a", "messages": history}))
    assert "messages[1].tool_calls[0]" in msg and field in msg


def test_expected_arguments_must_fit_the_tool_parameters(tmp_path):
    """A typo in an expected argument would fail every model on the case and hide a regression."""
    path = write(tmp_path, {"id": "a", "prompt": "weather in Oslo?", "tools": [WEATHER],
                            "expected_tool_call": {"name": "get_weather", "arguments": {"city": 3}}})
    msg = bad(path, ["tool_call"])
    assert msg.startswith("<dir>/cases.jsonl:1: ") and "expected_tool_call.arguments.city" in msg
    assert "get_weather" in msg
