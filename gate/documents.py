"""Read YAML/JSON documents strictly and validate them against shipped JSON Schemas.

Why not ``yaml.safe_load`` + ``jsonschema.validate``: users need to see *where* a
problem is (file, line:column and JSON pointer) and *every* problem at once, and
silently-accepted duplicate keys are a classic way for a gate to check the wrong
threshold. So this module keeps a map from JSON pointer to source position and
rejects duplicate keys in both YAML and JSON.

Files come from pull requests, so reading is bounded (:mod:`gate.limits`, docs/limits.md): size,
nesting depth and YAML aliases are checked before the parsers do the work they would multiply, and
jsonschema's ``pattern`` keywords run on RE2 (:class:`_LinearRe`), installed when this module loads.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from gate import limits
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


class _Refused(Exception):
    """A YAML document over one of gate's limits, at ``mark`` (turned into :class:`BadInput` by the caller)."""

    def __init__(self, message: str, mark: yaml.Mark):
        super().__init__(message)
        self.message = message
        self.mark = mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys and refuses, while composing, a document nested
    deeper than the depth limit (PyYAML's composer recurses: a deep one ends in RecursionError) or with
    more values than the YAML limit (PyYAML builds a few hundred bytes of Python objects per value)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.max_depth = limits.get("depth")
        self.max_values = limits.get("yaml_values")
        self.depth = 0
        self.values = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if not isinstance(event, yaml.AliasEvent):
            self.values += 1
            if self.values > self.max_values:
                raise _Refused(limits.exceeded("yaml_values", "too many values,"), event.start_mark)
        self.depth += nested
        try:
            if self.depth > self.max_depth:
                raise _Refused(limits.exceeded("depth", "nested too deeply,"), event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= nested


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


def _mark(mark: yaml.Mark) -> str:
    return f"{mark.line + 1}:{mark.column + 1}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past the limits ("billion laughs") or into a cycle.

    PyYAML shares an aliased node, so composing ten lines of nested aliases is cheap, but everything
    after it (JSON conversion, schema validation, the report) walks the expansion: 10**9 values. So
    the expanded size is computed here once per node of the composed graph (memoised), in time linear
    in the text, and refused at the first (innermost) value over a limit: values, characters of text
    (the document size limit) and depth."""
    max_values, max_chars, max_depth = limits.get("yaml_values"), limits.get("document"), limits.get("depth")
    sizes: dict[int, tuple[int, int, int]] = {}  # id(node) -> (values, characters, depth)
    open_nodes: set[int] = set()

    def measure(node: yaml.Node) -> tuple[int, int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _Refused("recursive YAML anchors are not supported", node.start_mark)
        open_nodes.add(key)
        values, chars, depth = 1, len(node.value) if isinstance(node, yaml.ScalarNode) else 0, 0
        for child in _children(node):
            child_values, child_chars, child_depth = measure(child)
            values, chars, depth = values + child_values, chars + child_chars, max(depth, child_depth)
        depth += not isinstance(node, yaml.ScalarNode)
        if values > max_values:
            raise _Refused(limits.exceeded("yaml_values", "with its aliases expanded, this value has too many "
                                                          "values,"), node.start_mark)
        if chars > max_chars:
            raise _Refused(limits.exceeded("document", f"with its aliases expanded, this value holds {chars:,} "
                                                       "characters of text,"), node.start_mark)
        open_nodes.discard(key)
        sizes[key] = (values, chars, depth)
        return sizes[key]

    if measure(root)[2] > max_depth:
        node = root
        for _ in range(max_depth):  # follow the deepest branch down to the first level over the limit
            node = max((c for c in _children(node) if sizes[id(c)][2]), key=lambda c: sizes[id(c)][2])
        raise _Refused(limits.exceeded("depth", "with its aliases expanded, nested too deeply,"), node.start_mark)


def _compose(text: str) -> yaml.Node | None:
    """PyYAML's node graph of ``text``, with the limits of :class:`_StrictLoader`."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _positions(root: yaml.Node | None) -> dict[str, tuple[int, int]]:
    """Map JSON pointers to 1-based (line, column) using PyYAML's node marks.

    An aliased node is located once, where its anchor is; the pointers through each alias are not
    walked (their count is what a billion-laughs document multiplies), so a problem inside one is
    reported at the alias's own pointer, the nearest located parent."""
    out: dict[str, tuple[int, int]] = {}
    seen: set[int] = set()

    def walk(node: yaml.Node, ptr: str, mark: yaml.Mark | None = None) -> None:
        # A mapping value is located at its key: that is where a user looks for "unknown key".
        mark = mark or node.start_mark
        out[ptr] = (mark.line + 1, mark.column + 1)
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, ptr + pointer_of([k.value]), k.start_mark)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{ptr}/{i}")

    if root is not None:
        walk(root, "")
    return out


def _json_positions(text: str, data: Any) -> dict[str, tuple[int, int]]:
    """Positions in a JSON document (read as YAML, tabs as spaces); none when PyYAML cannot read it, or
    when it holds more values than the YAML limit: PyYAML takes seconds per 100,000 values, and positions
    are a convenience (messages then give JSON pointers alone)."""
    if _more_values_than(data, limits.get("yaml_values")):
        return {}
    try:
        return _positions(_compose(text.replace("\t", " ")))
    except (yaml.YAMLError, _Refused):
        return {}


def _more_values_than(data: Any, cap: int) -> bool:
    """Whether ``data`` holds more than ``cap`` values, counting keys as PyYAML does (stops at ``cap``)."""
    stack, count = [data], 0
    while stack and count <= cap:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            count += len(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count > cap


def _duplicate_key_location(text: str) -> str | None:
    """``line:col`` of the first repeated key in a mapping, found on PyYAML's node tree."""
    try:
        root = _compose(text)
    except (yaml.YAMLError, _Refused):
        return None
    stack = [root] if root is not None else []
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = set()
            for k, v in node.value:
                if k.value in keys:
                    return f"{k.start_mark.line + 1}:{k.start_mark.column + 1}"
                keys.add(k.value)
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


_JSON_TOKEN = re.compile(r'[\[\]{}"]')
_JSON_STRING_REST = re.compile(r'(?:[^"\\]++|\\.)*+"', re.DOTALL)  # possessive: never backtracks


def too_deep_at(text: str, max_depth: int) -> int | None:
    """Offset of the first ``[`` or ``{`` nested deeper than ``max_depth`` in JSON ``text``, else None.

    Found without parsing: ``json.loads`` recurses once per level, so a deep value ends in
    RecursionError (or, raised far enough, a crash) before any check on the result could run. Text
    with no more brackets than the limit is passed at C speed; invalid JSON (an unterminated string)
    is left to the parser to report."""
    if text.count("[") + text.count("{") <= max_depth:
        return None
    depth, pos = 0, 0
    while token := _JSON_TOKEN.search(text, pos):
        pos = token.end()
        char = token.group()
        if char == '"':
            rest = _JSON_STRING_REST.match(text, pos)
            if rest is None:
                return None
            pos = rest.end()
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return token.start()
        else:
            depth -= 1
    return None


def line_col(text: str, offset: int) -> str:
    """1-based ``line:col`` of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)  # rfind is -1 on the first line
    return f"{line}:{column}"


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read_bytes(path: Path, what: str, limit: str | None = None) -> bytes:
    """The bytes of ``path``, or :class:`BadInput` saying why they cannot be read.

    With ``limit`` (a name in :data:`gate.limits.LIMITS`), a file over that many bytes is refused
    before it is read: by its size when the system knows it, else after reading one byte more than
    the limit (a pipe, or a file that grew), never by reading all of it."""
    try:
        with path.open("rb") as fh:
            if limit is None:
                return fh.read()
            cap = limits.get(limit)
            info = os.fstat(fh.fileno())
            if info.st_size > cap:
                raise BadInput(limits.exceeded(limit, f"the {what} has {info.st_size:,} bytes,"), path)
            raw = fh.read() if stat.S_ISREG(info.st_mode) else _read_at_most(fh, cap + 1)
            if len(raw) > cap:  # it grew since, or is a pipe
                raise BadInput(limits.exceeded(limit, f"the {what} has more than {cap:,} bytes,"), path)
            return raw
    except FileNotFoundError:
        raise BadInput(f"{what} not found", path) from None
    except IsADirectoryError:
        raise BadInput(f"{what} is a directory, expected a file", path) from None
    except OSError as exc:
        raise BadInput(f"cannot read {what}: {exc.strerror}", path) from None


def _read_at_most(fh: Any, size: int) -> bytes:
    """Up to ``size`` bytes of a stream whose size is unknown, read in pieces (``read(size)`` would
    allocate all of ``size`` at once, gigabytes for the data limit)."""
    chunks: list[bytes] = []
    left = size
    while left > 0 and (chunk := fh.read(min(left, 1 << 24))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


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
    """Parse a YAML or JSON file (by extension; JSON for ``.json``) strictly, within the limits of
    :mod:`gate.limits` (size, nesting depth and, for YAML, values with aliases expanded)."""
    path = Path(path)
    text = decode(read_bytes(path, kind, limit="document"), path)
    if not text.strip():
        raise BadInput(f"{kind} is empty", path)
    try:
        if path.suffix.lower() == ".json":
            data, positions = _load_json(text, path)
        else:
            data, positions = _load_yaml(text, path)
        data = _as_json(data, path)
    except RecursionError:  # only when GATE_MAX_DEPTH is raised past what Python's stack holds
        raise BadInput(too_deep_for_python(), path) from None
    return Document(path=path, data=data, positions=positions)


def too_deep_for_python() -> str:
    """The message for a value within GATE_MAX_DEPTH that Python's stack still cannot hold."""
    return (f"nested too deeply for Python to read (GATE_MAX_DEPTH is {limits.get('depth'):,}; "
            f"the default {limits.LIMITS['depth'].default} is safe)")


def _load_json(text: str, path: Path) -> tuple[Any, dict[str, tuple[int, int]]]:
    deep = too_deep_at(text, limits.get("depth"))
    if deep is not None:
        raise BadInput(limits.exceeded("depth", "nested too deeply,"), path, line_col(text, deep))
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicates,
                          parse_constant=lambda c: float(c))  # NaN/Infinity: rejected by _as_json
    except json.JSONDecodeError as exc:
        raise BadInput(f"invalid JSON: {exc.msg}", path, f"{exc.lineno}:{exc.colno}") from None
    except ValueError as exc:  # a duplicate key, or an integer of more digits than Python converts
        where = _duplicate_key_location(text.replace("\t", " ")) if str(exc).startswith("duplicate key") else None
        raise BadInput(f"invalid JSON: {exc}", path, where) from None
    return data, _json_positions(text, data)


def _load_yaml(text: str, path: Path) -> tuple[Any, dict[str, tuple[int, int]]]:
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}
        _check_expansion(root)
        return loader.construct_document(root), _positions(root)
    except _Refused as exc:
        raise BadInput(exc.message, path, _mark(exc.mark)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = f"{mark.line + 1}:{mark.column + 1}" if mark else None
        what = exc.problem or str(exc)
        if exc.context and exc.problem:
            what = f"{exc.context}, {exc.problem}"
        raise BadInput(f"invalid YAML: {what}", path, loc) from None
    except yaml.YAMLError as exc:
        raise BadInput(f"invalid YAML: {exc}", path) from None
    except TypeError as exc:  # e.g. a list used as a mapping key
        raise BadInput(f"invalid YAML: unsupported structure ({type(exc).__name__}: {exc})", path) from None
    finally:
        loader.dispose()


class _LinearRe:
    """Stands in for the ``re`` module inside jsonschema, which runs the ``pattern`` and
    ``patternProperties`` of a schema with ``re.search``: the cases file of a pull request brings
    both the schemas (its tools' parameters, its ``schema`` field) and the values checked against
    them, so a backtracking pattern there would hang ``gate validate``. RE2 runs them in linear
    time; a pattern it cannot run matches nothing (:func:`gate.cases.check_schema` refuses such
    patterns before any is run, and gate's own schemas use none)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def search(pattern: str, string: str, flags: int = 0) -> Any:
        compiled = _linear_pattern(pattern) if not flags else None
        return compiled.search(string) if compiled is not None else None


@lru_cache(maxsize=256)
def _linear_pattern(pattern: str) -> Any:
    try:
        return limits.linear_regex(pattern)
    except limits.RegexError:  # refused by gate.cases.check_schema before it gets here
        return None


def _patterns_on_re2() -> None:
    """Install :class:`_LinearRe` in the jsonschema modules that search with a schema's patterns."""
    import importlib

    for name in ("jsonschema._keywords", "jsonschema._utils", "jsonschema._legacy_keywords"):
        try:
            module = importlib.import_module(name)
        except ImportError:  # a jsonschema without this module: tests/security/test_limits.py notices
            continue
        if getattr(module, "re", None) is re:
            module.re = _LinearRe()


_patterns_on_re2()


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


#: words a user may write for an enum value (a task type above all), and the value they mean
_ALIASES = {
    "similarity": "sts", "semantic_similarity": "sts", "sentence_similarity": "sts", "stsb": "sts",
    "search": "retrieval", "ir": "retrieval", "information_retrieval": "retrieval", "ranking": "retrieval",
    "classify": "classification", "classifier": "classification", "cluster": "clustering",
    "generate": "generation", "generative": "generation", "chat": "generation", "completion": "generation",
    "judge": "pairwise", "llm_judge": "pairwise", "triplets": "pairs", "triplet": "pairs", "pair": "pairs",
    "ppl": "perplexity", "overfitting": "holdout",
}


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
        if isinstance(error.instance, str):
            names = [str(o) for o in error.validator_value]
            close = difflib.get_close_matches(error.instance, names, n=1)
            alias = _ALIASES.get(error.instance.strip().lower().replace("-", "_"))
            close = [alias] if alias in names else close
            if close:  # the most useful part first: what it probably means, then every allowed value
                got = _describe(error.instance)
                return [(ptr, f"got {got}; did you mean {close[0]!r}? (expected one of {options})")]
        return [(ptr, f"expected one of {options}, got {_describe(error.instance)}")]
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


#: arrays whose length a limit bounds, by schema: (pointer, limit name, what one item is)
_COUNTED = {"thresholds": ("/rules", "rules", "rules")}


def _too_many(doc: Document, schema_name: str) -> list[BadInput]:
    """The problem of an array over its limit (e.g. 100,000 threshold rules, minutes of checks)."""
    if schema_name not in _COUNTED or not isinstance(doc.data, dict):
        return []
    pointer, limit, items = _COUNTED[schema_name]
    value = doc.data.get(pointer.lstrip("/"))
    if isinstance(value, list) and len(value) > limits.get(limit):
        return [doc.error(pointer, limits.exceeded(limit, f"the file has {len(value):,} {items},"))]
    return []


def schema_problems(doc: Document, schema_name: str) -> list[BadInput]:
    """Every schema violation in ``doc``, located, in document order."""
    too_many = _too_many(doc, schema_name)
    if too_many:
        return too_many  # checking each of them would be the unbounded work the limit prevents
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    problems: list[tuple[tuple, str, str]] = []
    seen: set[tuple[str, str]] = set()
    try:
        errors = list(validator.iter_errors(doc.data))
    except RecursionError:  # only when GATE_MAX_DEPTH is raised past what Python's stack holds
        return [BadInput(too_deep_for_python(), doc.path)]
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
    problems = _root_causes(problems)
    problems.sort(key=lambda p: (p[0], p[1]))
    return [doc.error(ptr, msg) for _, ptr, msg in problems]


_TYPO = re.compile(r"unknown key .*; did you mean '(?P<key>[^']+)'\?\Z")


def _root_causes(problems: list[tuple[tuple, str, str]]) -> list[tuple[tuple, str, str]]:
    """The problems less those that only follow from another (one root cause, one message):

    - a misspelled key with a did-you-mean (``min_detla``) leaves its object without the key it meant: the
      object's own complaints naming that key ("expected exactly one of the keys 'min', ..., 'min_delta'",
      "'relative' applies only to 'min_delta' or 'max_drop'") go, the did-you-mean stays;
    - an unknown ``type`` (``type: similarity``) makes every field of its object look foreign: "key 'data'
      is not allowed here" and the like go, the type's own message stays."""
    meant: dict[str, set[str]] = {}
    for _, ptr, msg in problems:
        found = _TYPO.search(msg)
        if found:
            meant.setdefault(ptr.rsplit("/", 1)[0], set()).add(found["key"])
    bad_type = {ptr.rsplit("/", 1)[0] for _, ptr, msg in problems
                if ptr.endswith("/type") and "expected one of" in msg}

    def follows(ptr: str, msg: str) -> bool:
        if ptr in meant and any(f"'{key}'" in msg for key in meant[ptr]):
            return True
        parent = ptr.rsplit("/", 1)[0]
        return parent in bad_type and "is not allowed here" in msg or ptr in bad_type and "missing required" in msg

    return [p for p in problems if not follows(p[1], p[2])]


def validate(doc: Document, schema_name: str) -> None:
    """Raise :class:`BadInputs` listing every violation, if any."""
    problems = schema_problems(doc, schema_name)
    if problems:
        raise BadInputs(problems)
