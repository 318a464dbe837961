"""Shared pieces of the attack corpus: a listener that records everything sent to it, and the
Action run as GitHub runs it (entrypoint.py in a subprocess, INPUT_* with hyphens, event file,
GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) with the runner's secrets in its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

#: what a runner holds: the job's token, the runtime token, and a team's model key pasted with a newline
SECRETS = {
    "GITHUB_TOKEN": "ghs_runnerJobToken0123456789abcdefABCDEF",
    "ACTIONS_RUNTIME_TOKEN": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.runtime.token.value",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidcRequestToken_0123456789abcdef",
    "OPENAI_API_KEY": "sk-live-teamKey0123456789abcdefghijklmnop\n",
}


def secret_values() -> list[str]:
    return [v.strip() for v in SECRETS.values()]


@dataclass
class Listener:
    """A stdlib HTTP server on 127.0.0.1 that records every request (headers and body). By default it
    answers 400 with an OpenAI-shaped error that echoes the Authorization header back, as a careless
    proxy does, so anything a client sends could come back into gate's own text."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    echo: bool = True

    def __enter__(self) -> "Listener":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                owner.requests.append({"method": self.command, "path": self.path,
                                       "headers": dict(self.headers.items()), "body": body})
                message = f"bad credentials: {self.headers.get('Authorization')}" if owner.echo else "no"
                data = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                             "code": None}}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> str:
        """Everything sent to the listener, as one text to search."""
        return json.dumps(self.requests)


@pytest.fixture()
def listener():
    with Listener() as server:
        yield server


@dataclass
class ActionRun:
    proc: subprocess.CompletedProcess
    outputs: str
    summary: str
    out_dir: Path

    def everything(self) -> str:
        """Every byte the run made public: log, step outputs, summary and each file of its output folder."""
        files = [p.read_text(encoding="utf-8", errors="replace") for p in self.out_dir.rglob("*") if p.is_file()]
        return "\n".join([self.proc.stdout, self.proc.stderr, self.outputs, self.summary, *files])


def run_action(workspace: Path, tmp_path: Path, *, api_url: str = "http://127.0.0.1:9", event: dict | None = None,
               event_name: str = "pull_request", extra_env: dict[str, str] | None = None,
               **inputs: str) -> ActionRun:
    """entrypoint.py as the runner starts a Docker action, in ``workspace``, with :data:`SECRETS` set."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    summary, outputs, out_dir = tmp_path / "summary.md", tmp_path / "output.txt", tmp_path / "out"
    summary.write_text("")
    outputs.write_text("")
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event or {}))
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_REPOSITORY": "octo/app", "GITHUB_API_URL": api_url,
        "GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event_path), "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs),
        "INPUT_GITHUB-TOKEN": SECRETS["GITHUB_TOKEN"], "INPUT_COMMENT": "always", "INPUT_OUTPUT-DIR": str(out_dir),
        "INPUT_FAIL-ON-REGRESSION": "true", **SECRETS, **(extra_env or {}),
    }
    env.update({f"INPUT_{k.upper().replace('_', '-')}": v for k, v in inputs.items()})
    proc = subprocess.run([sys.executable, str(ROOT / "entrypoint.py")], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return ActionRun(proc, outputs.read_text(), summary.read_text(), out_dir)
