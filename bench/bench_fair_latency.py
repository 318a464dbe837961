"""Benchmark: is a latency comparison fair, and what does the interleaved schedule cost in wall time?

Both models are served by the local OpenAI-compatible test server (``tests/openai_server.py``, in its own
process) with the **same fixed latency**, so any latency difference gate reports is noise, and a test at
alpha = 0.05 should flag one in about 5 % of runs. For each of ``--seeds`` seeds this runs one ``gate``
evaluation (``gate.runner.run_suite``: a generation task of ``--cases`` cases, ``--concurrency`` requests in
flight per model, no cache) twice:

- ``interleaved`` (gate's schedule): each case's two requests go out together, in a seeded random order;
- ``sequential`` (the schedule before it): every baseline request, then every candidate request.

It prints, per schedule, the share of runs in which ``latency_p50_ms`` / ``latency_p99_ms`` (and either of
them) is flagged significant (p < 0.05), the median latency delta, and the wall time of a run; then the
wall-time ratio interleaved / sequential (the issue's target: <= 0.6; ideal 0.5 for two equal endpoints).

Run:  .venv/bin/python bench/bench_fair_latency.py [--seeds 20] [--cases 200] [--latency 0.2] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_openai_throughput import KEY_ENV, ServerProcess  # noqa: E402

ALPHA = 0.05
METRICS = ("latency_p50_ms", "latency_p99_ms")


def write_suite(folder: Path, url: str, cases: int, concurrency: int) -> Path:
    rows = [{"id": f"c{i}", "prompt": f"What is {i} plus {i}?", "expected": str(2 * i)} for i in range(cases)]
    (folder / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model = {"provider": "openai", "base_url": url, "api_key_env": KEY_ENV}
    suite = {"version": 1, "name": "fair-latency",
             "models": {"baseline": {**model, "model": "model-a"}, "candidate": {**model, "model": "model-b"}},
             "tasks": [{"name": "qa", "type": "generation", "cases": "cases.jsonl", "scorers": ["exact_match"],
                        "concurrency": concurrency, "max_tokens": 16}]}
    path = folder / "suite.json"
    path.write_text(json.dumps(suite), encoding="utf-8")
    return path


def one_run(suite_path: Path, seed: int, interleave: bool) -> tuple[float, dict]:
    from gate.runner import run_suite
    from gate.suite import load_suite

    start = time.perf_counter()
    results = run_suite(load_suite(suite_path, confine=False), seed=seed, interleave=interleave).results
    took = time.perf_counter() - start
    if results["errors"]:
        raise SystemExit(f"run failed: {results['errors'][:2]}")
    return took, results["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.2, help="the server's fixed latency, seconds")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per model")
    args = parser.parse_args()

    server = ServerProcess(args.latency)
    os.environ[KEY_ENV] = server.api_key
    print(f"server at {server.base_url}: fixed latency {args.latency * 1000:.0f} ms for both models; "
          f"{args.cases} cases, concurrency {args.concurrency} per model, {args.seeds} seeds, {os.cpu_count()} CPUs")
    rows: dict[str, list[dict]] = {"interleaved": [], "sequential": []}
    try:
        with tempfile.TemporaryDirectory(prefix="gate-bench-fair-") as tmp:
            suite = write_suite(Path(tmp), server.base_url, args.cases, args.concurrency)
            for seed in range(args.seeds):
                for schedule in ("interleaved", "sequential"):  # alternate, so machine load drifts over both
                    server.call("configure", {"latency": args.latency, "rate_429": 0, "retry_after": None})
                    took, metrics = one_run(suite, seed, schedule == "interleaved")
                    row = {"seed": seed, "wall_s": took, "requests": server.call("count", None)}
                    for name in METRICS:
                        m = metrics[f"qa/{name}"]
                        row[name] = (m["delta"], m["p_value"])
                    rows[schedule].append(row)
                    print(f"  seed {seed:2d} {schedule:<11} {took:6.2f} s  " + "  ".join(
                        f"{n}: delta {row[n][0]:+7.2f} ms p={row[n][1]:.3f}" for n in METRICS), flush=True)
        errors = server.call("errors")
    finally:
        server.stop()
    if errors:
        print(f"server errors: {errors[:3]}", file=sys.stderr)

    print(f"\n{'schedule':<12} {'runs':>4} " + " ".join(f"{'flagged ' + n[8:11]:>12}" for n in METRICS)
          + f" {'either':>8} {'median |delta p50| ms':>22} {'median wall s':>14}")
    walls = {}
    for schedule, runs in rows.items():
        flagged = {n: sum(1 for r in runs if r[n][1] is not None and r[n][1] < ALPHA) for n in METRICS}
        either = sum(1 for r in runs if any(r[n][1] is not None and r[n][1] < ALPHA for n in METRICS))
        walls[schedule] = statistics.median(r["wall_s"] for r in runs)
        delta = statistics.median(abs(r["latency_p50_ms"][0]) for r in runs)
        print(f"{schedule:<12} {len(runs):>4} " + " ".join(f"{flagged[n] / len(runs):>12.0%}" for n in METRICS)
              + f" {either / len(runs):>8.0%} {delta:>22.2f} {walls[schedule]:>14.2f}")
    print(f"\nshare flagged: expected near alpha = {ALPHA:.0%} per metric when the comparison is fair")
    ratio = walls["interleaved"] / walls["sequential"]
    print(f"wall time, interleaved / sequential (medians): {ratio:.2f}  (target <= 0.60; two equal endpoints: 0.5)")


if __name__ == "__main__":
    main()
