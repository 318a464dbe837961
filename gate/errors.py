"""User-facing exceptions.

Every failure a user can cause or meet is one of these. They carry the exit code
of contracts §1, and ``gate.cli`` is the only place that turns them into an exit:
library code raises, never prints or exits. Messages name the file, the location
and what was expected, because a CI log is read by someone who cannot rerun
under a debugger.
"""

from __future__ import annotations

from pathlib import Path

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2
EXIT_ERROR = 3


class GateError(Exception):
    """Base class: an error with a message meant for the user and an exit code."""

    exit_code = EXIT_ERROR


class BadInput(GateError):
    """Bad input (exit 2): usage, unreadable or invalid suite/thresholds/data file.

    ``where`` is the file, ``location`` a line number, ``line:column`` or JSON
    pointer inside it.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, where: str | Path | None = None, location: str | None = None):
        self.where = str(where) if where is not None else None
        self.location = location
        self.detail = message
        prefix = ""
        if self.where:
            prefix = self.where + (f":{location}" if location else "") + ": "
        elif location:
            prefix = f"{location}: "
        super().__init__(prefix + message)


class BadInputs(BadInput):
    """Several bad-input problems found at once (``gate validate`` lists them all)."""

    def __init__(self, problems: list[BadInput]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EvaluationError(GateError):
    """The evaluation could not be completed (exit 3): never reported as a pass."""

    exit_code = EXIT_ERROR


class ModelLoadError(EvaluationError):
    """A model exists but could not be loaded or used."""
