"""Read YAML/JSON documents strictly and validate them against shipped JSON Schemas.

Why not ``yaml.safe_load`` + ``jsonschema.validate``: users need to see *where* a
problem is (file, line:column and JSON pointer) and *every* problem at once, and
silently-accepted duplicate keys are a classic way for a gate to check the wrong
threshold. So this module keeps a map from JSON pointer to source position and
rejects duplicate keys in both YAML and JSON.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from gate.errors import BadInput, BadInputs


@dataclass
class Document:
    """A parsed document and where each of its values came from."""

    path: Path
    data: Any
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)

    def where(self, pointer: str) -> str:
        """``line:col`` of the value at ``pointer`` (or its nearest parent), else the pointer."""
        probe = pointer
        while True:
            if probe in self.positions:
                line, col = self.positions[probe]
                return f"{line}:{col}"
            if not probe:
                return pointer or "/"
            probe = probe.rsplit("/", 1)[0]

    def error(self, pointer: str, message: str) -> BadInput:
        loc = self.where(pointer)
        if pointer and loc != pointer:
            loc = f"{loc} ({pointer})"
        return BadInput(message, self.path, loc)


def pointer_of(path: Any) -> str:
    """JSON pointer (RFC 6901) for a sequence of keys/indices."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "".join("/" + p for p in parts)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    result: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in result:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark
            )
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Dates stay strings (a suite named 2024-01-01 is a name, not a date).
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _as_json(data: Any, path: Path) -> Any:
    """The data as plain JSON values; anything JSON cannot hold is bad input."""
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except ValueError as exc:  # NaN / Infinity, or a circular reference (recursive YAML anchors)
        what = "recursive YAML anchors are not supported" if "ircular" in str(exc) else \
            "NaN and Infinity are not allowed; expected a finite number"
        raise BadInput(what, path) from None
    except TypeError as exc:  # bytes (!!binary), sets and other non-JSON values
        raise BadInput(f"expected only JSON values (strings, numbers, booleans, null, lists, maps): {exc}",
                       path) from None
    except UnicodeEncodeError:
        raise BadInput("text with an unpaired surrogate (\\ud800-\\udfff); expected valid Unicode", path) from None
    return json.loads(text)


def _positions(text: str) -> dict[str, tuple[int, int]]:
    """Map JSON pointers to 1-based (line, column) using PyYAML's node marks."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict[str, tuple[int, int]] = {}

    def walk(node: yaml.Node, ptr: str, mark: yaml.Mark | None = None) -> None:
        # A mapping value is located at its key: that is where a user looks for "unknown key".
        mark = mark or node.start_mark
        out[ptr] = (mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, ptr + "/" + str(k.value).replace("~", "~0").replace("/", "~1"), k.start_mark)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{ptr}/{i}")

    if root is not None:
        walk(root, "")
    return out


def _duplicate_key_location(text: str) -> str | None:
    """``line:col`` of the first repeated key in a mapping, found on PyYAML's node tree."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for k, v in node.value:
                if k.value in seen:
                    return f"{k.start_mark.line + 1}:{k.start_mark.column + 1}"
                seen.add(k.value)
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read_bytes(path: Path, what: str) -> bytes:
    """The bytes of ``path``, or :class:`BadInput` saying why they cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{what} not found", path) from None
    except IsADirectoryError:
        raise BadInput(f"{what} is a directory, expected a file", path) from None
    except OSError as exc:
        raise BadInput(f"cannot read {what}: {exc.strerror}", path) from None


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (recorded so a results.json names exactly what it was judged by)."""
    return hashlib.sha256(read_bytes(path, "file")).hexdigest()


def decode(raw: bytes, path: Path) -> str:
    """UTF-8 text (a leading BOM is dropped), or :class:`BadInput` naming the offending byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None


def load_document(path: str | Path, kind: str = "file") -> Document:
    """Parse a YAML or JSON file (by extension; JSON for ``.json``) strictly."""
    path = Path(path)
    text = decode(read_bytes(path, kind), path)
    if not text.strip():
        raise BadInput(f"{kind} is empty", path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_reject_duplicates,
                              parse_constant=lambda c: float(c))  # NaN/Infinity: rejected by _as_json
        except json.JSONDecodeError as exc:
            raise BadInput(f"invalid JSON: {exc.msg}", path, f"{exc.lineno}:{exc.colno}") from None
        except ValueError as exc:  # duplicate key
            raise BadInput(f"invalid JSON: {exc}", path, _duplicate_key_location(text.replace("\t", " "))) from None
    else:
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            loc = f"{mark.line + 1}:{mark.column + 1}" if mark else None
            what = exc.problem or str(exc)
            if exc.context and exc.problem:
                what = f"{exc.context}, {exc.problem}"
            raise BadInput(f"invalid YAML: {what}", path, loc) from None
        except yaml.YAMLError as exc:
            raise BadInput(f"invalid YAML: {exc}", path) from None
        except (TypeError, RecursionError) as exc:  # e.g. a list used as a mapping key
            raise BadInput(f"invalid YAML: unsupported structure ({type(exc).__name__}: {exc})", path) from None
    data = _as_json(data, path)
    position_text = text.replace("\t", " ") if path.suffix.lower() == ".json" else text
    return Document(path=path, data=data, positions=_positions(position_text))


@cache
def load_schema(name: str) -> dict:
    """A JSON Schema shipped in ``gate/schemas`` (``suite``, ``thresholds``, ``results``)."""
    text = resources.files("gate.schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _known_keys(name: str) -> tuple[str, ...]:
    keys: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                keys.update(props)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(load_schema(name))
    return tuple(sorted(keys))


_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
               float: "number", type(None): "null"}


def _describe(value: Any) -> str:
    kind = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        return kind
    short = value if not isinstance(value, str) or len(value) < 60 else value[:57] + "..."
    shown = json.dumps(short, default=str)
    return f"{kind} {shown}"


def _declared_keys(schema: Any, instance: dict) -> set[str]:
    """Keys a schema declares for ``instance``: its ``properties`` plus those of every ``then`` whose ``if`` matches.

    When a ``then`` branch fails (a missing or mistyped field), jsonschema counts all of its keys as
    unevaluated; those keys are valid and the real problem is reported by the branch's own error.
    """
    if not isinstance(schema, dict):
        return set()
    keys = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        cond = part.get("if") if isinstance(part, dict) else None
        if cond is not None and jsonschema.Draft202012Validator(cond).is_valid(instance):
            keys |= set(part.get("then", {}).get("properties", {}))
    return keys


def _explain(error: jsonschema.ValidationError, schema_name: str) -> list[tuple[str, str]]:
    """(pointer, message) pairs in words a user acts on."""
    ptr = pointer_of(error.absolute_path)
    v = error.validator
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if custom and v in ("anyOf", "oneOf", "not", "const", "minItems", "minimum"):
        return [(ptr, custom)]
    if v in ("additionalProperties", "unevaluatedProperties"):
        inst = error.instance if isinstance(error.instance, dict) else {}
        if v == "additionalProperties":
            props = error.schema.get("properties", {})
            keys = [k for k in inst if k not in props]
        else:  # jsonschema names the unevaluated keys with repr() in its message
            declared = _declared_keys(error.schema, inst)
            keys = [k for k in inst if repr(k) in error.message and k not in declared]
        allowed = _known_keys(schema_name)
        out = []
        for key in keys:
            if key in allowed:
                out.append((ptr + "/" + str(key), f"key {key!r} is not allowed here (it belongs to another kind "
                                                  "of object, e.g. another task type)"))
                continue
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            out.append((ptr + "/" + str(key), f"unknown key {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")))
        if v == "unevaluatedProperties":
            return out  # empty when every key is declared: the failing branch reports the real problem
        return out or [(ptr, error.message)]
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [(ptr, f"missing required key {missing!r}")]
    if v == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return [(ptr, f"expected {expected}, got {_describe(error.instance)}")]
    if v == "enum":
        options = ", ".join(json.dumps(o) for o in error.validator_value)
        hint = ""
        if isinstance(error.instance, str):
            close = difflib.get_close_matches(error.instance, [str(o) for o in error.validator_value], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        return [(ptr, f"expected one of {options}, got {_describe(error.instance)}{hint}")]
    if v == "const":
        return [(ptr, f"expected {json.dumps(error.validator_value)}, got {_describe(error.instance)}")]
    if v == "pattern":
        desc = error.schema.get("description", f"a string matching {error.validator_value}")
        return [(ptr, f"expected {desc}, got {_describe(error.instance)}")]
    alternatives = error.validator_value if v in ("oneOf", "anyOf") else None
    if alternatives and all(isinstance(a, dict) and set(a) == {"required"} for a in alternatives):
        keys = ", ".join(repr(k) for a in alternatives for k in a["required"])
        present = [k for a in alternatives for k in a["required"] if isinstance(error.instance, dict) and k in error.instance]
        if v == "anyOf":
            return [(ptr, f"expected at least one of the keys {keys}")]
        got = f"; got {', '.join(map(repr, present))}" if present else ""
        return [(ptr, f"expected exactly one of the keys {keys}{got}")]
    if v in ("oneOf", "anyOf") and error.context:
        # Report the alternative that got furthest: the most specific sub-error.
        best = jsonschema.exceptions.best_match(error.context)
        return _explain(best, schema_name)
    return [(ptr, custom or error.message)]


def schema_problems(doc: Document, schema_name: str) -> list[BadInput]:
    """Every schema violation in ``doc``, located, in document order."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    problems: list[tuple[tuple, str, str]] = []
    seen: set[tuple[str, str]] = set()
    errors = list(validator.iter_errors(doc.data))
    for err in errors:
        explained = _explain(err, schema_name)
        for ptr, msg in explained:
            if (ptr, msg) in seen:
                continue
            seen.add((ptr, msg))
            line_col = doc.positions.get(ptr, doc.positions.get(ptr.rsplit("/", 1)[0], (0, 0)))
            problems.append((line_col, ptr, msg))
    if errors and not problems:  # never let an invalid document through for want of a nice message
        problems = [((0, 0), pointer_of(e.absolute_path), e.message) for e in errors]
    problems.sort(key=lambda p: (p[0], p[1]))
    return [doc.error(ptr, msg) for _, ptr, msg in problems]


def validate(doc: Document, schema_name: str) -> None:
    """Raise :class:`BadInputs` listing every violation, if any."""
    problems = schema_problems(doc, schema_name)
    if problems:
        raise BadInputs(problems)
