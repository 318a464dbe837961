"""The cases file of a ``generation`` task: one chat conversation per line, checked up front.

JSON Lines, one object per line (blank lines skipped; extra keys ignored)::

    {"id": "refund-1", "prompt": "...", "expected": "...", "category": "edge_case"}
    {"id": 7, "messages": [{"role": "user", "content": "..."}], "schema": {...}}
    {"id": "weather", "prompt": "...", "tools": [...], "expected_tool_call": {"name": "...", "arguments": {...}}}

Everything a scorer will need is checked here, before a single request is sent,
so a typo in case 412 costs nothing but a message naming ``file:412`` and the field:
a run that spends money on a model and then crashes on a bad regex is the failure
this module exists to prevent.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Sequence

import jsonschema
from jsonschema.validators import validator_for

from gate import limits
from gate.data import _json_lines, read_data
from gate.documents import decode
from gate.errors import BadInput

ROLES = ("system", "user", "assistant", "tool")
CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: scorers that compare the answer with the row's ``expected`` text
NEEDS_EXPECTED = ("exact_match", "contains", "regex", "rouge_l", "bleu")


@dataclass(frozen=True)
class Case:
    """One conversation to send, and what its scorers compare the answer with."""

    id: str
    line: int
    messages: tuple[dict, ...]
    expected: str | None
    category: str | None
    schema: dict | None
    tools: tuple[dict, ...] | None
    #: ``{"name": str, "arguments": dict}``; ``None`` with ``expects_tool_call`` means "must NOT call a tool"
    expected_tool_call: dict | None
    #: whether the row has the key ``expected_tool_call`` at all
    expects_tool_call: bool


@dataclass(frozen=True)
class CaseSet:
    path: Path
    cases: list[Case]
    sha256: str

    def __len__(self) -> int:
        return len(self.cases)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def schema_validator_class(schema: dict) -> type:
    """The jsonschema validator class for ``schema``: its ``$schema`` draft, else Draft 2020-12.

    Raises ``ValueError`` for a ``$schema`` that names no draft jsonschema knows (rather than
    jsonschema's silent fallback with a DeprecationWarning).
    """
    if "$schema" not in schema:
        return jsonschema.Draft202012Validator
    declared = schema["$schema"]
    cls = validator_for(schema, default=None) if isinstance(declared, str) else None
    if cls is None:
        raise ValueError(f"'$schema' {declared!r} names no JSON Schema draft that jsonschema knows")
    return cls


def check_schema(schema: Any, where: str | Path | None, location: str | None, field: str = "schema") -> dict:
    """``schema`` if it is a valid JSON Schema object, else :class:`BadInput` at ``where:location``."""
    if not isinstance(schema, dict):
        raise BadInput(f"field {field!r}: expected a JSON Schema object, got {_type_name(schema)}", where, location)
    try:
        cls = schema_validator_class(schema)
        cls.check_schema(schema, format_checker=_linear_format_checker(cls))
    except ValueError as exc:
        raise BadInput(f"field {field!r}: {exc}", where, location) from None
    except jsonschema.SchemaError as exc:
        at = "/".join(str(p) for p in exc.path)
        at = f" at {at!r}" if at else ""
        raise BadInput(f"field {field!r}: invalid JSON Schema{at}: {_schema_problem(exc)}", where, location) from None
    except RecursionError:
        raise BadInput(f"field {field!r}: the JSON Schema is nested too deeply to check", where, location) from None
    return schema


@cache
def _linear_format_checker(cls: type) -> jsonschema.FormatChecker:
    """The draft's format checker, but a ``regex`` (a ``pattern`` or a ``patternProperties`` key) must
    be one RE2 can run: gate runs schema patterns on RE2 (see :class:`gate.documents._LinearRe`)."""
    checker = jsonschema.FormatChecker(formats=())
    checker.checkers = dict(cls.FORMAT_CHECKER.checkers)
    checker.checks("regex", raises=limits.RegexError)(_runs_on_re2)
    return checker


def _runs_on_re2(instance: object) -> bool:
    if isinstance(instance, str):
        limits.linear_regex(instance)
    return True


def _schema_problem(exc: jsonschema.SchemaError) -> str:
    if exc.validator == "format" and exc.validator_value == "regex" and exc.cause is not None:
        return (f"the pattern {_short(repr(exc.instance))} cannot run on RE2, the linear-time regular expression "
                f"engine gate uses ({limits.regex_problem(exc.cause)})")
    return _short(exc.message)


def check_tools(tools: Any, where: str | Path | None, location: str | None, field: str = "tools") -> tuple[dict, ...]:
    """``tools`` as a tuple if it is a non-empty list of OpenAI function tools, else :class:`BadInput`.

    Each tool: ``{"type": "function", "function": {"name", "description"?, "parameters"?}}``;
    ``parameters`` is a JSON Schema with ``"type": "object"``. Other keys (e.g. ``strict``) pass through.
    """
    if not isinstance(tools, list) or not tools:
        got = "an empty array" if tools == [] else _type_name(tools)
        raise BadInput(f"field {field!r}: expected a non-empty array of tool definitions, got {got}", where, location)
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        here = f"{field}[{i}]"
        shape = '{"type": "function", "function": {"name": ..., "parameters": {...}}}'
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise BadInput(f"field {here!r}: expected a function tool {shape}", where, location)
        fn = tool["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise BadInput(f"field {here + '.function.name'!r}: expected 1-64 letters, digits, '_' or '-', "
                           f"got {name!r}", where, location)
        if name in seen:
            raise BadInput(f"field {here + '.function.name'!r}: duplicate tool name {name!r}", where, location)
        seen.add(name)
        if "description" in fn and not isinstance(fn["description"], str):
            raise BadInput(f"field {here + '.function.description'!r}: expected a string, "
                           f"got {_type_name(fn['description'])}", where, location)
        if "parameters" in fn:
            params = check_schema(fn["parameters"], where, location, here + ".function.parameters")
            if params.get("type") != "object":
                raise BadInput(f"field {here + '.function.parameters'!r}: expected a schema with \"type\": \"object\"",
                               where, location)
    return tuple(tools)


def _messages(record: dict, system: str | None, path: Path, loc: str) -> tuple[dict, ...]:
    has_messages, has_prompt = "messages" in record, "prompt" in record
    if has_messages and has_prompt:
        raise BadInput("expected exactly one of 'messages' or 'prompt', got both", path, loc)
    if not has_messages and not has_prompt:
        from gate.data import row_keys

        raise BadInput(f"missing 'messages' or 'prompt'; expected one of them; {row_keys(record)}", path, loc)
    if has_prompt:
        prompt = record["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise BadInput(f"field 'prompt': expected a non-empty string, got {_type_name(prompt)}", path, loc)
        messages = [{"role": "user", "content": prompt}]
    else:
        raw = record["messages"]
        if not isinstance(raw, list) or not raw:
            got = "an empty array" if raw == [] else _type_name(raw)
            raise BadInput(f"field 'messages': expected a non-empty array of messages, got {got}", path, loc)
        messages = []
        for i, m in enumerate(raw):
            here = f"messages[{i}]"
            if not isinstance(m, dict):
                raise BadInput(f"field {here!r}: expected an object with 'role' and 'content', "
                               f"got {_type_name(m)}", path, loc)
            if m.get("role") not in ROLES:
                raise BadInput(f"field {here + '.role'!r}: expected one of {', '.join(ROLES)}, "
                               f"got {m.get('role')!r}", path, loc)
            calls = m.get("tool_calls")
            if m["role"] == "assistant" and calls is not None:
                if not isinstance(calls, list) or not calls or not all(isinstance(c, dict) for c in calls):
                    raise BadInput(f"field {here + '.tool_calls'!r}: expected a non-empty array of objects",
                                   path, loc)
                if m.get("content") is not None and not isinstance(m["content"], str):
                    raise BadInput(f"field {here + '.content'!r}: expected a string or null, "
                                   f"got {_type_name(m['content'])}", path, loc)
                for j, call in enumerate(calls):
                    _check_history_call(call, f"{here}.tool_calls[{j}]", path, loc)
            elif not isinstance(m.get("content"), str):
                got = "nothing" if "content" not in m else _type_name(m["content"])
                raise BadInput(f"field {here + '.content'!r}: expected a string, got {got}", path, loc)
            if m["role"] == "tool" and not (isinstance(m.get("tool_call_id"), str) and m["tool_call_id"]):
                raise BadInput(f"field {here + '.tool_call_id'!r}: expected the id of the assistant's tool call "
                               "this message answers (a tool message without it is refused by the API)", path, loc)
            messages.append(dict(m))
        if messages[-1]["role"] not in ("user", "tool"):
            raise BadInput(f"field 'messages': the last message must have role 'user' or 'tool', "
                           f"got {messages[-1]['role']!r}", path, loc)
    if system is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return tuple(messages)


def _check_history_call(call: dict, here: str, path: Path, loc: str) -> None:
    """An earlier assistant tool call, in the shape the chat API requires (else it answers 400 after
    the other requests were paid for)."""
    function = call.get("function")
    problems = []
    if not (isinstance(call.get("id"), str) and call["id"]):
        problems.append("'id' (a non-empty string)")
    if call.get("type") != "function":
        problems.append("'type': 'function'")
    if not (isinstance(function, dict) and isinstance(function.get("name"), str) and function["name"]
            and isinstance(function.get("arguments"), str)):
        problems.append("'function' with a string 'name' and 'arguments' (a JSON string)")
    if problems:
        raise BadInput(f"field {here!r}: expected {', '.join(problems)}", path, loc)


def _expected_tool_call(value: Any, tools: tuple[dict, ...] | None, path: Path, loc: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadInput(f"field 'expected_tool_call': expected null or an object "
                       f"{{\"name\": ..., \"arguments\": {{...}}}}, got {_type_name(value)}", path, loc)
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise BadInput(f"field 'expected_tool_call.name': expected a non-empty string, got {name!r}", path, loc)
    arguments = value.get("arguments", {})
    if not isinstance(arguments, dict):
        raise BadInput(f"field 'expected_tool_call.arguments': expected an object, got {_type_name(arguments)}",
                       path, loc)
    if tools is not None:
        names = [t["function"]["name"] for t in tools]
        if name not in names:
            raise BadInput(f"field 'expected_tool_call.name': {name!r} is not one of the tools "
                           f"({', '.join(map(repr, names))})", path, loc)
        parameters = tools[names.index(name)]["function"].get("parameters")
        if parameters is not None:
            # A typo in an expected argument would make every model fail the case: the regression hides.
            try:
                error = next(iter(schema_validator_class(parameters)(parameters).iter_errors(arguments)), None)
            except RecursionError:  # only when GATE_MAX_DEPTH is raised past what Python's stack holds
                raise BadInput("field 'expected_tool_call.arguments': nested too deeply to check against the "
                               f"parameters of tool {name!r}", path, loc) from None
            if error is not None:
                at = "/".join(str(p) for p in error.absolute_path)
                raise BadInput(f"field 'expected_tool_call.arguments{('.' + at) if at else ''}': does not match "
                               f"the parameters of tool {name!r}: {error.message[:200]}", path, loc)
    return {"name": name, "arguments": arguments}


def _check_requirements(case: Case, scorers: Sequence[str], path: Path, loc: str) -> None:
    """Every field the task's scorers read is present and usable."""
    for scorer in scorers:
        if scorer in NEEDS_EXPECTED:
            if case.expected is None:
                raise BadInput(f"missing 'expected'; the scorer {scorer!r} needs it", path, loc)
            if not case.expected.strip():
                raise BadInput(f"field 'expected': expected a non-empty string; the scorer {scorer!r} needs it",
                               path, loc)
        if scorer == "regex":
            _check_regex(case.expected, path, loc)
        if scorer == "json_schema" and case.schema is None:
            raise BadInput("missing 'schema'; the scorer 'json_schema' needs it (in the row or as the task's "
                           "default)", path, loc)
        if scorer == "tool_call":
            if not case.expects_tool_call:
                raise BadInput("missing 'expected_tool_call'; the scorer 'tool_call' needs it "
                               "(null means the model must not call a tool)", path, loc)
            if case.expected_tool_call is not None and case.tools is None:
                raise BadInput("missing 'tools'; the scorer 'tool_call' needs it (in the row or as the task's "
                               "default) when 'expected_tool_call' is not null", path, loc)


def _check_regex(pattern: str, path: Path, loc: str) -> None:
    """The scorer 'regex' runs ``pattern`` on RE2 (linear time: a backtracking pattern from a pull request
    cannot hang the gate); one RE2 cannot run is refused here, before any model is called."""
    try:
        limits.linear_regex(pattern)
        return
    except limits.RegexError as exc:
        problem = limits.regex_problem(exc)
    try:
        re.compile(pattern)  # only compiled, never run: says whether the pattern is wrong or merely unsupported
    except (re.error, OverflowError, RecursionError) as exc:
        raise BadInput(f"field 'expected': invalid regular expression for the scorer 'regex': {exc}",
                       path, loc) from None
    raise BadInput(f"field 'expected': the scorer 'regex' cannot run this pattern: it runs patterns on RE2, a "
                   f"linear-time engine without backreferences or lookaround ({problem}); see docs/limits.md",
                   path, loc)


def _case(record: dict, line: int, scorers: Sequence[str], default_schema: dict | None,
          default_tools: tuple[dict, ...] | None, system: str | None, path: Path) -> Case:
    loc = str(line)
    if "id" not in record or record["id"] is None:
        raise BadInput("missing 'id'; expected a string or integer id", path, loc)
    raw_id = record["id"]
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise BadInput(f"field 'id': expected a string or integer id, got {_type_name(raw_id)}", path, loc)
    case_id = str(raw_id)
    if not case_id.strip():
        raise BadInput("field 'id': expected a non-empty id", path, loc)
    messages = _messages(record, system, path, loc)
    expected = record.get("expected")
    if expected is not None and not isinstance(expected, str):
        raise BadInput(f"field 'expected': expected a string, got {_type_name(expected)}", path, loc)
    category = record.get("category")
    if category is not None and (not isinstance(category, str) or not CATEGORY.match(category)):
        raise BadInput(f"field 'category': expected 1-64 lowercase letters, digits, '_' or '-' starting with a "
                       f"letter or digit (it becomes part of metric ids like pass_rate[category]), "
                       f"got {category!r}", path, loc)
    schema = check_schema(record["schema"], path, loc) if record.get("schema") is not None else default_schema
    tools = check_tools(record["tools"], path, loc) if record.get("tools") is not None else default_tools
    case = Case(
        id=case_id, line=line, messages=messages, expected=expected, category=category, schema=schema,
        tools=tools, expected_tool_call=_expected_tool_call(record.get("expected_tool_call"), tools, path, loc),
        expects_tool_call="expected_tool_call" in record,
    )
    _check_requirements(case, scorers, path, loc)
    return case


def read_cases(path: str | Path, scorers: Sequence[str], *, schema: dict | None = None, tools: list | None = None,
               system: str | None = None, what: str = "cases file") -> CaseSet:
    """Read and check every case of ``path``; raise :class:`BadInput` at the first bad one.

    ``schema`` and ``tools`` are the task's defaults (already checked by the caller with
    :func:`check_schema` / :func:`check_tools`), used by rows that set none; ``system`` is
    prepended as a system message to every case that does not start with one.
    """
    path = Path(path)
    raw = read_data(path, what)
    default_tools = tuple(tools) if tools is not None else None
    cases: list[Case] = []
    first_line: dict[str, int] = {}
    for line, record in _json_lines(path, decode(raw, path)):
        case = _case(record, line, scorers, schema, default_tools, system, path)
        if case.id in first_line:
            raise BadInput(f"duplicate id {case.id!r}: also on line {first_line[case.id]}; ids must be unique",
                           path, str(line))
        first_line[case.id] = line
        cases.append(case)
    if not cases:
        raise BadInput(f"{what} has no cases; expected JSON Lines rows with 'id' and 'messages' or 'prompt'", path)
    return CaseSet(path=path, cases=cases, sha256=hashlib.sha256(raw).hexdigest())
