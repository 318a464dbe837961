"""Data-file readers (JSON Lines, CSV, TSV) that locate every bad row.

A row problem is reported as ``file:line: what was expected``; the line is the
physical line in the file (CSV: counting the header as line 1). Extra columns are
ignored so users can keep their own metadata beside the fields gate reads.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from gate import limits
from gate.documents import decode, read_bytes, too_deep_at, too_deep_for_python
from gate.errors import BadInput

Kind = Literal["text", "id", "number", "integer", "optional_text"]
INT_LIMIT = 2**31 - 1  # relevance grades and the like; larger values are a data error, not a grade


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


@dataclass(frozen=True)
class Table:
    """Rows of one data file, with the line each row came from and the file's sha256."""

    path: Path
    rows: list[dict[str, Any]]
    lines: list[int]
    sha256: str

    def __len__(self) -> int:
        return len(self.rows)


def _coerce(value: Any, col: Column, from_text: bool) -> Any:
    """Return the typed value or raise ``ValueError`` with what was expected."""
    if col.kind in ("text", "optional_text"):
        if value is None and col.kind == "optional_text":
            return ""
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("expected valid Unicode text, got an unpaired surrogate") from None
        if col.kind == "text" and not value.strip():
            raise ValueError("expected a non-empty string")
        return value
    if col.kind == "id":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"expected a string or integer id, got {type(value).__name__}")
        value = str(value)
        if not value:
            raise ValueError("expected a non-empty id")
        return value
    shown = value  # report what the file says, e.g. '1.5' for a CSV cell
    if from_text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"expected {'a number' if col.kind == 'number' else 'an integer'}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if col.kind == "integer":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {shown!r}")
        if not -INT_LIMIT <= value <= INT_LIMIT:
            raise ValueError(f"expected an integer between {-INT_LIMIT} and {INT_LIMIT}, got {shown!r}")
        return int(value)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _records(path: Path, raw: bytes) -> tuple[Iterator[tuple[int, dict]], bool]:
    """(line, record) pairs, parsed lazily so the first bad row is the one reported, and whether
    values came from text (CSV/TSV)."""
    text = decode(raw, path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _delimited(path, text, suffix == ".tsv"), True
    return _json_lines(path, text), False


def _delimited(path: Path, text: str, tsv: bool) -> Iterator[tuple[int, dict]]:
    # TSV is taken literally (no quoting), as STS-style TSV files are written.
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {}
    reader = csv.DictReader(io.StringIO(text, newline=""), **options)
    try:
        for record in reader:
            if None in record:
                raise BadInput(f"more columns than the header's {len(reader.fieldnames or [])}", path,
                               str(reader.line_num))
            yield reader.line_num, record
    except csv.Error as exc:
        raise BadInput(f"invalid {'TSV' if tsv else 'CSV'}: {exc}", path, str(reader.line_num)) from None


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text``, split on "\\n" only (str.splitlines() would also break inside strings at
    U+2028 and friends), one at a time: a list of every line of a big corpus would double its memory."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        yield text[start:end]
        start = end + 1


def read_data(path: Path, what: str) -> bytes:
    """The bytes of a data file, refused (before any is decoded or parsed) when the file or one of
    its lines is over its limit: the parser's memory grows with the line, ~100 bytes per character."""
    raw = read_bytes(path, what, limit="data")
    check_lines(raw, path)
    return raw


def check_lines(raw: bytes, path: Path) -> None:
    """:class:`BadInput` at the first line of ``raw`` longer than the line limit (in bytes)."""
    cap = limits.get("line")
    if len(raw) <= cap:
        return
    start, number = 0, 1
    while start < len(raw):
        end = raw.find(b"\n", start, start + cap + 1)  # looks at most one byte past the limit
        if end < 0:
            if len(raw) - start <= cap:
                return
            end = raw.find(b"\n", start)
            size = (end if end >= 0 else len(raw)) - start
            raise BadInput(limits.exceeded("line", f"the line has {size:,} bytes,"), path, str(number))
        start, number = end + 1, number + 1


def json_line(line: str, path: Path, number: int, max_depth: int) -> Any:
    """The JSON value on line ``number`` of a JSON Lines file, nested at most ``max_depth`` deep."""
    deep = too_deep_at(line, max_depth)
    if deep is not None:
        raise BadInput(limits.exceeded("depth", f"nested too deeply (column {deep + 1}),"), path, str(number))
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"invalid JSON: {exc.msg} (column {exc.colno}); expected one JSON object per line",
                       path, str(number)) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise BadInput(f"invalid JSON: {exc}", path, str(number)) from None
    except RecursionError:  # only when GATE_MAX_DEPTH is raised past what Python's stack holds
        raise BadInput(too_deep_for_python(), path, str(number)) from None


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    max_depth = limits.get("depth")
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        record = json_line(line, path, number, max_depth)
        if not isinstance(record, dict):
            raise BadInput(f"expected a JSON object, got {type(record).__name__}", path, str(number))
        yield number, record


def read_table(path: str | Path, columns: list[Column], what: str = "data file") -> Table:
    """Read and type-check every row of ``path``; raise :class:`BadInput` at the first bad one."""
    sha256, rows = scan_table(path, columns, what)
    table = Table(path=Path(path), rows=[], lines=[], sha256=sha256)
    for line, row in rows:
        table.rows.append(row)
        table.lines.append(line)
    return table


def scan_table(path: str | Path, columns: list[Column], what: str = "data file"
               ) -> tuple[str, Iterator[tuple[int, dict[str, Any]]]]:
    """The file's sha256 and its type-checked ``(line, row)`` pairs, one at a time.

    For a big file (a million-document corpus) whose reader keeps a few fields per row: a list of
    every row's dict would cost several times the texts, and leave that memory fragmented once freed.
    The first bad row, or a file with no rows, raises :class:`BadInput` while iterating."""
    path = Path(path)
    raw = read_data(path, what)
    sha256 = hashlib.sha256(raw).hexdigest()
    records, from_text = _records(path, raw)
    del raw

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        count = 0
        for line, record in records:
            row = {}
            for col in columns:
                if col.name not in record or (record[col.name] is None and col.kind != "optional_text"):
                    if col.kind == "optional_text":
                        row[col.name] = ""
                        continue
                    raise BadInput(missing(col, record, from_text, [c.name for c in columns]), path, str(line))
                try:
                    row[col.name] = _coerce(record[col.name], col, from_text)
                except ValueError as exc:
                    raise BadInput(f"field {col.name!r}: {exc}", path, str(line)) from None
            count += 1
            yield line, row
        if not count:
            expected = ", ".join(c.name for c in columns)
            raise BadInput(f"{what} has no rows; expected rows with {expected}", path)

    return sha256, rows()


def missing(col: Column, record: dict[str, Any], from_text: bool = False, known: Iterable[str] = ()) -> str:
    """Why ``record`` lacks ``col``, naming what it has: ``missing 'score' (expected a number); the row has:
    sentence1, sentence2, label``, with the key it probably meant when one is close (not one of the ``known``
    columns the reader uses)."""
    if col.name in record and from_text:  # a CSV row shorter than its header
        given = sum(value is not None for value in record.values())
        return f"missing {col.name!r} (expected {_expected(col)}): the row has {given} of the header's " \
               f"{len(record)} columns"
    if col.name in record:  # JSON null
        return f"field {col.name!r}: expected {_expected(col)}, got null"
    known = set(known)
    close = difflib.get_close_matches(col.name, [str(k) for k in record if k not in known], n=1, cutoff=0.7)
    hint = f" (is {_key(close[0])} meant to be {col.name!r}?)" if close else ""
    return f"missing {col.name!r} (expected {_expected(col)}); {row_keys(record, from_text)}{hint}"


def row_keys(record: dict[str, Any], from_text: bool = False) -> str:
    """What a row holds, for a message about a missing key: ``the row has: sentence1, sentence2, label``."""
    keys = [str(k) for k in record]
    if not keys:
        return "the header is empty" if from_text else "the row is an empty object"
    more = f", … ({len(keys) - _KEYS_SHOWN} more)" if len(keys) > _KEYS_SHOWN else ""
    return f"{'the header has' if from_text else 'the row has'}: {', '.join(_key(k) for k in keys[:_KEYS_SHOWN])}{more}"


_KEYS_SHOWN = 12
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.@\[\]-]{1,40}")


def _key(key: str) -> str:
    """A key of a data row as a message shows it: plain when it is a plain word, else quoted and cut."""
    return key if _PLAIN_KEY.fullmatch(key) else repr(key if len(key) <= 40 else key[:39] + "…")


def _expected(col: Column) -> str:
    return {
        "text": "a non-empty string",
        "optional_text": "a string",
        "id": "a string or integer id",
        "number": "a number",
        "integer": "an integer",
    }[col.kind]
