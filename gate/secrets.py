"""Secrets: which variables a suite may name as an API key, where a key may be sent, and redaction.

gate runs on pull requests, and a pull request writes the suite. A suite that could name any
environment variable as ``api_key_env`` and any ``base_url`` would make gate post the runner's
``GITHUB_TOKEN`` (or the team's OpenAI key) to a server of the attacker's choosing. So:

- a key may come only from a variable the workflow owner allows (``GATE_KEY_VARS``, default
  ``OPENAI_API_KEY`` and ``*_API_KEY``); the runner's own variables (``GITHUB_TOKEN``, ``GH_TOKEN``,
  ``ACTIONS_*``, ``RUNNER_*``, ``GITHUB_*``, ``INPUT_*``) never, whatever the owner lists;
- a key goes only to a loopback host, to ``api.openai.com``, to the host of ``OPENAI_BASE_URL``
  (set by the workflow, not the suite) or to a host the owner lists in ``GATE_KEY_HOSTS``; never
  over plain ``http://`` to another host unless that entry says ``http://``;
- every secret value gate reads, and every secret-looking variable of the environment, is
  registered with :data:`REDACTOR`, and every writer (stdout, stderr, results.json, report.md,
  examples.jsonl, the comment, the job summary, step outputs) passes its text through
  :func:`redact`: the runner masks secrets in its log, but not in a PR comment or an artifact.

Both refusals are bad input (exit 2) raised before any request is made.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
import threading
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from gate.errors import BadInput

KEY_VARS_ENV = "GATE_KEY_VARS"
KEY_HOSTS_ENV = "GATE_KEY_HOSTS"
DEFAULT_KEY_VARS = ("OPENAI_API_KEY", "*_API_KEY")
#: never a model key, whatever GATE_KEY_VARS says: the runner's credentials and gate's own inputs
FORBIDDEN_KEY_VARS = ("GITHUB_TOKEN", "GH_TOKEN", "ACTIONS_*", "RUNNER_*", "GITHUB_*", "INPUT_*")
DEFAULT_KEY_HOSTS = ("api.openai.com",)
#: shorter values are not redacted: a key of a keyless local server ("ollama", "x") is no secret,
#: and replacing a short word everywhere would garble the report
MIN_SECRET_LENGTH = 8
MASK = "***"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY|ACCESS_KEY|PRIVATE_KEY|_KEY$",
                          re.IGNORECASE)


def _patterns(value: str) -> list[str]:
    return [p for p in re.split(r"[\s,]+", value.strip()) if p]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def allowed_key_vars(env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    given = env.get(KEY_VARS_ENV, "")
    return _patterns(given) if given.strip() else list(DEFAULT_KEY_VARS)


def check_key_var(name: Any, where: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse a key variable the workflow owner did not allow (bad input, nothing is sent)."""
    if not isinstance(name, str) or not name:
        raise BadInput(f"api_key_env {name!r}: expected the name of an environment variable", location=where)
    if _matches(name, FORBIDDEN_KEY_VARS):
        raise BadInput(f"api_key_env {name!r} is refused: a suite may never send the runner's credentials "
                       f"({', '.join(FORBIDDEN_KEY_VARS)}) to a model endpoint; name the variable that holds the "
                       "model's API key, e.g. OPENAI_API_KEY", location=where)
    allowed = allowed_key_vars(env)
    if not _matches(name, allowed):
        raise BadInput(f"api_key_env {name!r} is not an allowed key variable (allowed: {', '.join(allowed)}); "
                       f"the workflow owner can allow it with {KEY_VARS_ENV} (the Action's key-vars input)",
                       location=where)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _host_entries(env: Mapping[str, str]) -> list[tuple[str, str, int | None]]:
    """(scheme, host, port) the owner allows keys to go to; scheme '' means https only."""
    entries = list(DEFAULT_KEY_HOSTS) + _patterns(env.get(KEY_HOSTS_ENV, ""))
    base = env.get("OPENAI_BASE_URL", "").strip()
    if base:
        entries.append(base)
    out = []
    for entry in entries:
        try:
            parts = urlsplit(entry if "://" in entry else f"//{entry}")
            if parts.hostname:
                out.append((parts.scheme.lower(), parts.hostname.lower(), parts.port))
        except ValueError:
            raise BadInput(f"{entry!r} is not a host, host:port or URL", location=KEY_HOSTS_ENV) from None
    return out


def check_key_destination(url: str, where: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse to send a key to a host the owner did not allow, or over plain http to a remote host."""
    env = os.environ if env is None else env
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadInput(f"base_url {url!r} is not a valid URL (its host or port); expected e.g. "
                       "https://api.openai.com/v1", location=where) from None
    host, scheme = (parts.hostname or "").lower(), parts.scheme.lower()
    if _is_loopback(host):
        return
    for allowed_scheme, allowed_host, allowed_port in _host_entries(env):
        if host != allowed_host or (allowed_port is not None and port != allowed_port):
            continue
        if scheme == "https" or allowed_scheme == "http":
            return
        raise BadInput(f"base_url {shown_url(url)!r}: an API key is never sent over plain http:// to a host other "
                       f"than this machine; use https://, or let the workflow owner allow it with "
                       f"{KEY_HOSTS_ENV}=http://{host}{f':{port}' if port else ''}", location=where)
    raise BadInput(f"base_url {shown_url(url)!r}: an API key may be sent only to this machine, api.openai.com or a "
                   f"host the workflow owner allows with {KEY_HOSTS_ENV} (the Action's key-hosts input); "
                   f"{host!r} is not allowed", location=where)


def shown_url(url: str) -> str:
    """The URL without credentials (user:password@ never reaches a message)."""
    parts = urlsplit(url)
    if parts.hostname and (parts.username or parts.password):
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url


# --- redaction --------------------------------------------------------------------------------

class Redactor:
    """The secret values of this process, and the one function every writer calls on its text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: list[str] = []
        self._lock = threading.Lock()

    def register(self, value: str | None) -> None:
        """Redact ``value`` (and its stripped form, and both as JSON or repr() would escape them)."""
        if not value:
            return
        forms = set()
        for v in {value, value.strip()}:
            if len(v) < MIN_SECRET_LENGTH:
                continue
            forms |= {v, json.dumps(v, ensure_ascii=False)[1:-1], json.dumps(v)[1:-1], repr(v)[1:-1]}
        with self._lock:
            new = forms - self._values
            if new:
                self._values |= new
                self._forms = sorted(self._values, key=len, reverse=True)

    def register_environment(self, env: Mapping[str, str] | None = None) -> None:
        """Register the values of the environment's secret-looking variables (tokens, keys, passwords)."""
        env = os.environ if env is None else env
        for name, value in env.items():
            if _SECRET_NAME.search(name) and not name.startswith("GATE_"):
                self.register(value)

    def redact(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._forms = []


REDACTOR = Redactor()


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    return REDACTOR.redact(text)


def read_secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """The value of the secret variable ``name``, stripped of surrounding whitespace (a key pasted with a
    trailing newline would otherwise end up, inside an HTTP library's error, in public text) and registered
    for redaction in both forms."""
    env = os.environ if env is None else env
    raw = env.get(name, "")
    REDACTOR.register(raw)
    return raw.strip()


class RedactingStream:
    """A text stream that redacts every complete line (and applies ``transform``, e.g. the neutralizing of
    workflow commands) before it reaches the underlying stream.

    Whole lines are held back until their newline (or a flush), so a secret written in two pieces is
    still found; everything else (isatty, fileno, encoding) is the underlying stream's."""

    def __init__(self, stream: Any, transform: Callable[[str], str] | None = None):
        self._stream = stream
        self._pending = ""
        self._transform = transform or (lambda text: text)

    def _out(self, text: str) -> None:
        self._stream.write(self._transform(redact(text)))

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            done, _, self._pending = self._pending.rpartition("\n")
            self._out(done + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._out(self._pending)
            self._pending = ""
        self._stream.flush()

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        if name == "buffer":  # the bytes underneath would bypass the redaction (click writes there when the
            raise AttributeError(name)  # stream's encoding is ASCII)
        return getattr(self._stream, name)
