"""The Action's log: only gate's own annotations can be read by the runner as workflow commands.

The runner reads every line a step prints, and a line that starts with ``::`` (after leading
whitespace), or holds ``##[`` anywhere (the old syntax), is a workflow command: ``::add-mask::``,
``::set-output::``, ``::error::``, ``::stop-commands::``. Libraries print what they are given:
sentence-transformers logs a model folder's ``model_type`` (a pull request's text) with its
newlines intact. ``::stop-commands::`` around gate's own prints does not cover a library that
writes to stderr from elsewhere, so in the Action the process's file descriptors 1 and 2 are
routed through a pipe (:class:`OutputGuard`): a thread neutralizes and redacts every line before it
reaches the runner, and only lines that carry a random per-run nonce, written by
:meth:`OutputGuard.command`, pass as they are.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import threading
from typing import TextIO

from gate.secrets import redact

#: what .NET's TrimStart drops before the runner looks for "::", plus invisible characters
_INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2060\ufeff]+")
_BREAKS = re.compile(r"(\r\n|\r|\n)")


def _neutralize_segment(segment: str) -> str:
    index = segment.find("::")
    if index >= 0 and not _INVISIBLE.sub("", segment[:index]):
        segment = segment[:index] + ": :" + segment[index + 2:]
    return segment.replace("##[", "# #[")


def neutralize(text: str) -> str:
    """``text`` with no line the runner could read as a workflow command; line breaks kept.

    The runner splits on ``\\r`` as well as ``\\n``, so each piece between any of them is checked."""
    return "".join(piece if _BREAKS.fullmatch(piece) else _neutralize_segment(piece)
                   for piece in _BREAKS.split(text))


class OutputGuard:
    """Routes file descriptors 1 and 2 (Python's prints, libraries' logging, C code, child processes)
    through a pipe; every line comes out on the original stdout neutralized and redacted, except the
    lines written by :meth:`command`. One stream keeps the order of gate's and the libraries' lines."""

    def __init__(self) -> None:
        self._nonce = secrets.token_hex(16)
        self._saved: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._real: int | None = None

    def __enter__(self) -> "OutputGuard":
        sys.stdout.flush()
        sys.stderr.flush()
        self._real = os.dup(1)
        self._saved = (os.dup(1), os.dup(2))
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end,), name="gate-log", daemon=True)
        self._thread.start()
        return self

    def command(self, line: str) -> None:
        """Print one of gate's own workflow commands (already escaped by :func:`gate.github.annotation`)."""
        sys.stderr.flush()
        sys.stdout.write(self._nonce + line.replace("\r", " ").replace("\n", " ") + "\n")
        sys.stdout.flush()

    def _emit(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        if text.startswith(self._nonce):
            out = redact(text[len(self._nonce):])
        else:
            out = neutralize(redact(text))
        assert self._real is not None
        data = out.encode("utf-8")
        while data:
            data = data[os.write(self._real, data):]

    def _pump(self, fd: int) -> None:
        pending = b""
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                if b"\n" in pending:
                    done, _, pending = pending.rpartition(b"\n")
                    for line in done.split(b"\n"):
                        self._emit(line + b"\n")
        if pending:
            self._emit(pending + b"\n")

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        assert self._saved is not None and self._thread is not None and self._real is not None
        os.dup2(self._saved[0], 1)  # the pipe's last write ends close here, so the pump sees its end
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._thread.join(timeout=10)
        os.close(self._real)


class Console:
    """The Action's log lines. ``command`` is for gate's own workflow commands; everything else, text
    that came from suites, data, models or libraries, is neutralized and redacted first."""

    def __init__(self, out: TextIO, guard: OutputGuard | None = None):
        self.out = out
        self.guard = guard

    def command(self, line: str) -> None:
        line = redact(line)
        if self.guard is not None:
            self.guard.command(line)
        else:
            print(line, file=self.out, flush=True)

    def untrusted(self, text: str) -> None:
        print(neutralize(redact(text)), file=self.out, flush=True)

    def warning(self, message: str) -> None:
        from gate.github import annotation

        self.command(annotation("warning", message))
