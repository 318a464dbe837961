"""Benchmark: how long ``gate run`` takes to give up on an endpoint that cannot answer, with default settings.

Each scenario runs the real command line (``gate run SUITE``, a fresh process, so start-up is included)
on a generation task of ``--cases`` cases at the default concurrency (4) and with **no timeout, retry or
breaker option in the suite** (gate's defaults: connect timeout 10 s, read timeout 60 s, 4 retries, the
first-answer window connect + read + 20 = 90 s):

- ``hung``: both models' endpoint accepts connections and never answers (a TCP server that reads and
  holds every connection). Target: exit 3 in under 120 s.
- ``hung candidate``: the same for the candidate only; the baseline is the healthy test server.
- ``dead``: nothing listens on the endpoint's port (connection refused): exit 3 within seconds.
- ``slow but healthy``: the OpenAI-compatible test server answering every request after ``--slow`` seconds
  (default 5): the run must complete (exit 0), not be cut short.

Prints each scenario's exit code, wall seconds and the first error line.

Run:  .venv/bin/python bench/bench_endpoint_limits.py [--cases 8] [--slow 5] [--only hung dead ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_openai_throughput import KEY_ENV, ServerProcess  # noqa: E402

TARGET_S = 120.0


class _Hold(socketserver.BaseRequestHandler):
    """Read whatever comes and never answer, until the client hangs up or the server stops."""

    def handle(self) -> None:
        self.request.settimeout(1.0)
        while not self.server.stopping.is_set():  # type: ignore[attr-defined]
            try:
                if not self.request.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return


class HungServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hold)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def write_suite(folder: Path, baseline_url: str, candidate_url: str, cases: int) -> Path:
    rows = [{"id": f"c{i}", "prompt": f"Say the number {i}.", "expected": str(i)} for i in range(cases)]
    (folder / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    suite = {"version": 1, "name": "endpoint-limits", "models": {
        "baseline": {"provider": "openai", "model": "model-a", "base_url": baseline_url, "api_key_env": KEY_ENV},
        "candidate": {"provider": "openai", "model": "model-b", "base_url": candidate_url, "api_key_env": KEY_ENV}},
        "tasks": [{"name": "qa", "type": "generation", "cases": "cases.jsonl", "scorers": ["contains"]}]}
    path = folder / "suite.json"
    path.write_text(json.dumps(suite), encoding="utf-8")
    return path


def gate_command() -> list[str]:
    script = Path(sys.executable).parent / "gate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gate"]


def run_gate(suite: Path, out: Path, key: str, limit: float) -> tuple[int, float, str]:
    env = {**os.environ, KEY_ENV: key, "CI": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(gate_command() + ["run", str(suite), "--out", str(out), "--allow-outside-root"],
                              env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - start, f"still running after {limit:.0f} s (killed)"
    took = time.perf_counter() - start
    lines = [line.strip() for line in proc.stdout.splitlines() if "[error]" in line]
    return proc.returncode, took, (lines[0] if lines else proc.stdout.strip().splitlines()[0] if proc.stdout else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--slow", type=float, default=5.0, help="latency of the slow but healthy endpoint, seconds")
    parser.add_argument("--only", nargs="+", choices=["hung", "hung-candidate", "dead", "slow"],
                        help="run only these scenarios")
    args = parser.parse_args()
    chosen = args.only or ["hung", "hung-candidate", "dead", "slow"]

    healthy = ServerProcess(0.05)
    slow = ServerProcess(args.slow)
    hung = HungServer()
    print(f"{args.cases} cases per model, default timeouts and retries, {os.cpu_count()} CPUs")
    print(f"{'scenario':<22} {'exit':>4} {'seconds':>8}  first error")
    try:
        with tempfile.TemporaryDirectory(prefix="gate-bench-limits-") as tmp:
            scenarios = {
                "hung": (hung.base_url, hung.base_url, 3),
                "hung-candidate": (healthy.base_url, hung.base_url, 3),
                "dead": (closed_port_url(), closed_port_url(), 3),
                "slow": (slow.base_url, slow.base_url, 0),
            }
            for name in chosen:
                base_url, cand_url, expected = scenarios[name]
                folder = Path(tmp) / name
                folder.mkdir()
                suite = write_suite(folder, base_url, cand_url, args.cases)
                code, took, first = run_gate(suite, folder / "out", healthy.api_key, limit=900)
                ok = code == expected and (expected != 3 or took < TARGET_S)
                print(f"{name:<22} {code:>4} {took:>8.1f}  {first[:150]}  [{'PASS' if ok else 'MISS'}]", flush=True)
    finally:
        hung.stop()
        healthy.stop()
        slow.stop()
    print(f"targets: hung or dead -> exit 3 in < {TARGET_S:.0f} s; slow but healthy ({args.slow:g} s a request) -> "
          "completes (exit 0)")


if __name__ == "__main__":
    main()
