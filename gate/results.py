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




def _output_options(spec: Any) -> dict[str, Any]:
    from gate.suite import FETCH_OPTIONS

    return {k: v for k, v in spec.options if k not in FETCH_OPTIONS}


def mark_same_model(results: dict[str, Any], pairs: Iterable[tuple[Any, Any]]) -> bool:
    """Record in ``results`` whether the candidate is the baseline itself: for every task, the two models
    (``pairs``: the (baseline, candidate) :class:`~gate.suite.ModelSpec` of each task) have the same provider and
    output options, and results.json records the same fingerprint for both. Then every difference is noise and
    every rule that requires an improvement fails for that reason: the report and the terminal say so first.
    Sets ``models.candidate.same_as_baseline: true`` (left out otherwise); returns whether it did."""
    models = results.get("models") or {}
    tasks = results.get("tasks") or {}
    records = [(tasks.get(name, {}).get("models") or models) for name in tasks] or [models]
    pairs = list(pairs)
    same = bool(pairs) and all(b.provider == c.provider and _output_options(b) == _output_options(c)
                               for b, c in pairs)
    for record in records:
        fingerprints = [(record.get(role) or {}).get("fingerprint") for role in ("baseline", "candidate")]
        same = same and fingerprints[0] is not None and fingerprints[0] == fingerprints[1]
    if same and isinstance(models.get("candidate"), dict):
        models["candidate"]["same_as_baseline"] = True
    return same


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


#: what each kind of gate file is, for a message about the wrong one given where a results.json is expected
KINDS = {
    "report": "a report (report.md)",
    "markdown": "a Markdown file",
    "suite": "a suite file",
    "thresholds": "a thresholds file",
    "examples": "an examples.jsonl (per-example outputs)",
    "shard": "a shard's shard.json (combine the shards with `gate merge`, then pass its results.json)",
}
RESULTS_HINT = "written by `gate run`, e.g. gate-out/results.json"


def kind_of_data(data: Any) -> str | None:
    """Which gate file ``data`` (a parsed document) is, by its keys: results, suite, thresholds or shard."""
    if not isinstance(data, dict):
        return None
    if data.get("format") == "gate-shard-v1":
        return "shard"
    if "schema_version" in data or ("verdict" in data and "metrics" in data):
        return "results"
    if "rules" in data:
        return "thresholds"
    if "tasks" in data:
        return "suite"
    return None


def kind_of_file(path: Path) -> str | None:
    """Which gate file ``path`` is (``report``, ``examples``, ``results``, ``suite``, ``thresholds``, ``shard``),
    or None when it is none of them or cannot be read."""
    from gate.documents import read_bytes

    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "examples"
    try:
        head = read_bytes(path, "file", limit="document")[:200].decode("utf-8", "replace")
    except BadInput:
        return None
    if head.lstrip().startswith("<!-- gate-report"):
        return "report"
    if suffix in (".md", ".markdown"):
        return "markdown"
    try:
        return kind_of_data(load_document(path).data)
    except BadInput:
        return None


def not_results(path: Path, kind: str | None, expected: str = "a results.json",
                hint: str | None = RESULTS_HINT) -> BadInput:
    """The message for a file that is not what a command reads: what it is, and what to pass instead."""
    wanted = f"{expected} ({hint})" if hint else expected
    if kind in KINDS:
        return BadInput(f"this is {KINDS[kind]}, expected {wanted}", path)
    return BadInput(f"expected {wanted}", path)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results.json (bad input raises, exit 2). Another gate file (a suite, thresholds,
    a report.md, examples.jsonl, a shard) is named as what it is, before any parse error or schema complaint."""
    path = Path(path)
    if path.suffix.lower() != ".json" and path.is_file():
        raise not_results(path, kind_of_file(path))
    doc = load_document(path, "results file")
    kind = kind_of_data(doc.data)
    if kind != "results":
        raise not_results(path, kind)
    validate(doc, "results")
    return doc.data
