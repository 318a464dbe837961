"""results.json and examples.jsonl: writing, reading and schema checks (contracts §5).

Values are written as plain floats; a NaN or infinite value becomes ``null`` (JSON
has no NaN) and any rule that needs it reports an error. Reading validates against
the shipped schema, so ``gate check`` and ``gate render`` never act on a file they
do not understand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from gate.documents import load_document, validate
from gate.errors import BadInput
from gate.secrets import redact


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        return _clean(value.item())
    return value


def dumps(results: dict[str, Any]) -> str:
    """results.json's text, with every secret redacted (:func:`gate.secrets.redact`)."""
    return redact(json.dumps(_clean(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def example_line(row: dict[str, Any]) -> str:
    """One examples.jsonl line, with every secret redacted."""
    return redact(json.dumps(_clean(row), ensure_ascii=False, allow_nan=False)) + "\n"


def write_outputs(out_dir: str | Path, results: dict[str, Any], report: str,
                  examples: Iterable[dict[str, Any]] | None = None) -> dict[str, Path]:
    """Write results.json, report.md and (when given) examples.jsonl; return their paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {"results": out / "results.json", "report": out / "report.md"}
        paths["results"].write_text(dumps(results), encoding="utf-8")
        paths["report"].write_text(redact(report), encoding="utf-8")
        if examples is not None:
            paths["examples"] = out / "examples.jsonl"
            with paths["examples"].open("w", encoding="utf-8") as fh:
                for row in examples:
                    fh.write(example_line(row))
    except OSError as exc:
        raise BadInput(f"cannot write the output: {exc.strerror}", exc.filename or out) from None
    return paths


def read_examples(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """The rows of an examples.jsonl with their line numbers (blank lines skipped).

    A line that is not a JSON object, text that is not UTF-8 or an unreadable file is bad
    input naming the file (and line). Rows of unexpected shape are kept: each reader (the
    report, ``gate human export``) checks what it needs. The file may come from a pull
    request's run, so the limits of :mod:`gate.limits` on data files apply: its size, each
    line's bytes (a line is never read past the limit) and the nesting of each row.
    """
    import os

    from gate import limits
    from gate.documents import too_deep_at, too_deep_for_python

    path = Path(path)
    rows: list[tuple[int, dict[str, Any]]] = []
    max_line, max_depth = limits.get("line"), limits.get("depth")
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limits.get("data"):
                raise BadInput(limits.exceeded("data", f"the examples file has {size:,} bytes,"), path)
            for lineno, raw in enumerate(iter(lambda: fh.readline(max_line + 2), b""), 1):
                if len(raw) - raw.endswith(b"\n") > max_line:  # read no further: the rest may be gigabytes
                    raise BadInput(limits.exceeded("line", f"the line has more than {max_line:,} bytes,"), path,
                                   str(lineno))
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                deep = too_deep_at(line, max_depth)
                if deep is not None:
                    raise BadInput(limits.exceeded("depth", f"nested too deeply (column {deep + 1}),"), path,
                                   str(lineno))
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BadInput(f"not valid JSON: {exc.msg}", path, str(lineno)) from None
                except ValueError as exc:  # an integer of more digits than Python converts
                    raise BadInput(f"not valid JSON: {exc}", path, str(lineno)) from None
                except RecursionError:  # only when GATE_MAX_DEPTH is raised past what Python's stack holds
                    raise BadInput(too_deep_for_python(), path, str(lineno)) from None
                if not isinstance(row, dict):
                    raise BadInput("expected a JSON object per line", path, str(lineno))
                rows.append((lineno, row))
    except OSError as exc:
        raise BadInput(f"cannot read the examples: {exc.strerror}", path) from None
    except UnicodeDecodeError:
        raise BadInput("not UTF-8 text", path) from None
    return rows


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results.json (bad input raises, exit 2)."""
    doc = load_document(Path(path), "results file")
    if Path(path).suffix.lower() != ".json":
        raise BadInput("expected a results.json file", path)
    validate(doc, "results")
    return doc.data
