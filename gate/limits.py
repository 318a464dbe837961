"""Limits on the work a file can cause, each raisable by an environment variable (docs/limits.md).

gate reads suites, thresholds, data and results from pull requests, which may be hostile:
without a bound, a 20-line YAML file with nested aliases expands to gigabytes, a deeply
nested JSON value overflows Python's stack, and one 200 MiB data line costs 20 GB. Each
limit here is far above what a real file needs and is checked before the expensive work
starts, so a file over it is bad input (exit 2) within seconds, with a message naming the
variable that raises it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import re2

from gate.errors import BadInput

#: what :func:`linear_regex` raises for a pattern RE2 cannot run
RegexError = re2.error

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limit:
    variable: str
    default: int
    #: how the limit reads after "over the limit of N", e.g. "bytes per line of a data file"
    unit: str


LIMITS: dict[str, Limit] = {
    "line": Limit("GATE_MAX_LINE_BYTES", 1 * MIB, "bytes per line of a data file"),
    "document": Limit("GATE_MAX_DOCUMENT_BYTES", 16 * MIB, "bytes per document (suite, thresholds or results file)"),
    "data": Limit("GATE_MAX_DATA_BYTES", 4 * 1024 * MIB, "bytes per data file"),
    "depth": Limit("GATE_MAX_DEPTH", 64, "levels of nested lists and objects"),
    "rules": Limit("GATE_MAX_RULES", 1000, "rules per thresholds file"),
    "model_download": Limit("GATE_MAX_MODEL_DOWNLOAD_BYTES", 20 * 1024 * MIB,
                            "bytes to download for one Hugging Face Hub model"),
    "yaml_values": Limit("GATE_MAX_YAML_VALUES", 100_000,
                         "values per YAML file, each use of an alias counting what it refers to in full"),
}


def _read(limit: Limit) -> int:
    """The limit's value: its environment variable when set, else its default."""
    raw = os.environ.get(limit.variable)
    if raw is None or not raw.strip():
        return limit.default
    text = raw.strip()
    try:
        value = int(text) if text.isascii() and text.isdigit() else 0
    except ValueError:  # more digits than Python converts
        value = 0
    if value < 1:
        raise BadInput(f"environment variable {limit.variable}: expected a whole number of at least 1 "
                       f"(default {limit.default}), got {raw!r}")
    return value


def get(name: str) -> int:
    """The current value of the limit ``name``.

    Every variable is checked on each call, so a mistyped one is reported whichever limit the
    command happens to need first, rather than ignored until a file grows past a default."""
    values = {key: _read(limit) for key, limit in LIMITS.items()}
    return values[name]


def exceeded(name: str, subject: str) -> str:
    """The message for ``subject`` (e.g. "the line has 2,000,000 bytes,") being over the limit ``name``."""
    limit = LIMITS[name]
    return f"{subject} over the limit of {get(name):,} {limit.unit} (set {limit.variable} to raise it)"


def linear_regex(pattern: str) -> re2._Regexp:
    """``pattern`` compiled by RE2, whose matching time is linear in the text.

    Python's ``re`` backtracks: ``^(a+)+$`` against 40 ``a`` and a ``!`` runs for days, so no
    pattern from a pull request is ever run on it. RE2 refuses what it cannot run in linear time
    (backreferences, lookaround) with :data:`RegexError` (see :func:`regex_problem`); its own log
    line for that is silenced, the caller reports it."""
    return re2.compile(pattern, _re2_options())


def regex_problem(exc: Exception) -> str:
    """RE2's reason for refusing a pattern, as text (it comes as bytes)."""
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


@cache
def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    return options
