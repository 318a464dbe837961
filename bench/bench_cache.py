"""Benchmark: a warm re-run of the demo suite against its cold run, with one persistent --cache folder.

Runs ``gate run`` as a user would (a fresh process each time, the console script):

- cold: an empty ``--cache`` folder, so both models encode every text and fill the cache;
- warm: the same command and cache again (``--warm`` times, the best is reported).

Prints the wall and CPU time of each and warm/cold (issue 7 target: <= 0.10; the CPU ratio is
the steadier one on a shared machine), the cache's size and what the runs' logs say. The suite is the demo suite's data with two distinct
models that need no training: the baseline is the embedded all-MiniLM-L6-v2, the candidate the
same weights with ``max_seq_length: 128`` (another cache key: its vectors differ for long texts; ``--seq-length
24`` makes them differ for most STS-B pairs too, so every statistic compares two different models).
With ``--candidate SPEC`` the candidate is that model instead (e.g. the demo fine-tune).

``--profile`` also runs the warm command under ``python -X importtime`` and ``cProfile`` and prints
where its time goes (imports, model loading, fingerprints, cache reads, statistics).

``--before DIR`` also times warm runs of another copy of gate's code on the same cache and cold run (e.g.
``git archive HEAD | tar -x -C DIR``: the code before a change), so a before/after ratio shares one
denominator and the same machine load: warm runs of the two alternate.

Run:  .venv/bin/python bench/bench_cache.py [--warm 3] [--candidate SPEC] [--profile] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"

SUITE = """\
version: 1
name: bench-cache
models:
  baseline: {{provider: sentence-transformers, model: default}}
{candidate}
tasks:
  - {{name: stsb, type: sts, group: general, data: {data}/stsb/test.jsonl}}
  - name: cranfield
    type: retrieval
    group: target
    queries: {data}/cranfield/queries-test.jsonl
    corpus: {data}/cranfield/corpus.jsonl
    qrels: {data}/cranfield/qrels-test.jsonl
    k: [1, 5, 10]
"""


def gate_command() -> list[str]:
    script = Path(sys.executable).parent / "gate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gate"]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (all threads of the child) and the stderr of one run."""
    start, cpu = time.perf_counter(), _child_cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    took, cpu = time.perf_counter() - start, _child_cpu() - cpu
    if proc.returncode not in (0, 1):  # pass or fail are both a finished run
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return took, cpu, proc.stderr


def cache_lines(log: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if re.search(r"cache:|encoded|loading", line)]


def profile(cmd: list[str], env: dict[str, str], work: Path) -> None:
    """Where a warm run spends its time: import time of the heavy packages, then the cProfile top."""
    py = [sys.executable]
    args = cmd[1:] if cmd[0] != sys.executable else cmd[3:]
    launcher = ["-m", "gate"]
    proc = subprocess.run(py + ["-X", "importtime"] + launcher + args, env=env, capture_output=True, text=True,
                          cwd=ROOT)
    imports = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) <= 2:  # top-level imports (and their first level)
            imports.append((int(m.group(2)) / 1e6, m.group(4)))
    print("\nwarm run, top-level imports by cumulative time (python -X importtime):")
    for secs, name in sorted(imports, reverse=True)[:12]:
        print(f"  {secs:6.2f} s  {name}")
    stats_file = work / "warm.pstats"
    subprocess.run(py + ["-m", "cProfile", "-o", str(stats_file)] + launcher + args, env=env,
                   capture_output=True, text=True, cwd=ROOT)
    print("\nwarm run, gate functions by cumulative time (cProfile):")
    stats = pstats.Stats(str(stats_file))
    rows = []
    for (file, line, func), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "/gate/" in file and "/site-packages/" not in file:
            rows.append((cum, f"{Path(file).relative_to(ROOT) if ROOT in Path(file).parents else file}:{func}"))
    for cum, name in sorted(rows, reverse=True)[:25]:
        print(f"  {cum:6.2f} s  {name}")
    heavy = [("model loading (load_embedder, imports included)", "gate/providers/__init__.py", "load_embedder"),
             ("SentenceTransformerEmbedder.model (a lazy load)", "gate/providers/sentence_transformers.py",
              "model"),
             ("fingerprint_dir", "fingerprint.py", "fingerprint_dir"),
             ("EmbeddingCache.lookup", "cache.py", "lookup"),
             ("compare_metric", "compare.py", "compare_metric")]
    print("\nwarm run, selected costs (cProfile, cumulative):")
    for label, file_part, func in heavy:
        total = sum(v[3] for (f, _, fn), v in stats.stats.items()  # type: ignore[attr-defined]
                    if fn == func and file_part.lower() in f.lower())
        print(f"  {total:6.2f} s  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm", type=int, default=3, help="warm runs; the best is reported (default 3)")
    parser.add_argument("--candidate", help="candidate model as PROVIDER:MODEL instead of max_seq_length 128")
    parser.add_argument("--seq-length", type=int, default=128,
                        help="the default candidate's max_seq_length (default 128: most STS-B pairs then get the "
                             "baseline's vectors; e.g. 24 makes every statistic a real comparison)")
    parser.add_argument("--profile", action="store_true", help="also profile a warm run")
    parser.add_argument("--keep", type=Path, help="use (and keep) this folder for the cache and outputs")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="also time warm runs of the gate package in DIR (PYTHONPATH=DIR), alternating")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="gate-bench-cache-"))
    cache, out = work / "cache", work / "out"
    shutil.rmtree(cache, ignore_errors=True)
    suite = work / "suite.yaml"
    suite.parent.mkdir(parents=True, exist_ok=True)
    # a --candidate of the same provider would inherit the suite candidate's options: declare none then
    candidate = "" if args.candidate else \
        f"  candidate: {{provider: sentence-transformers, model: default, max_seq_length: {args.seq_length}}}"
    suite.write_text(SUITE.format(data=json.dumps(str(DEMO / "data"))[1:-1], candidate=candidate))
    env = {**os.environ, "CI": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # the suite lives in a temporary folder and names the demo's data files: trusted, so outside its root
    cmd = gate_command() + ["run", str(suite), "--cache", str(cache), "--out", str(out), "--allow-outside-root"]
    if args.candidate:
        cmd += ["--candidate", args.candidate]
    print(f"command: {' '.join(cmd)}")

    cold, cold_cpu, cold_log = timed(cmd, env)
    print(f"cold: {cold:7.2f} s wall, {cold_cpu:7.2f} s CPU")
    for line in cache_lines(cold_log):
        print(f"      {line}")
    size = sum(p.stat().st_size for p in cache.glob("embeddings.sqlite3*"))
    print(f"cache: {size / 2**20:.1f} MiB in {cache}")
    warm_runs, before_runs = [], []
    before_env = {**env, "PYTHONPATH": str(args.before.resolve())} if args.before else None
    before_cmd = [sys.executable, "-m", "gate"] + cmd[len(gate_command()):]
    for i in range(args.warm):
        took, cpu, warm_log = timed(cmd, env)
        warm_runs.append((took, cpu))
        print(f"warm {i + 1}: {took:5.2f} s wall, {cpu:5.2f} s CPU")
        if before_env is not None:
            b_took, b_cpu, _ = timed(before_cmd, before_env, cwd=args.before.resolve())  # its own gate first
            before_runs.append((b_took, b_cpu))
            print(f"warm {i + 1} (--before code): {b_took:5.2f} s wall, {b_cpu:5.2f} s CPU")
    for line in cache_lines(warm_log):
        print(f"      {line}")
    warm, warm_cpu = min(warm_runs)
    print(f"cold {cold:.2f} s, warm {warm:.2f} s (best of {args.warm}); CPU: cold {cold_cpu:.2f} s, "
          f"warm {warm_cpu:.2f} s")
    print(f"warm / cold = {warm / cold:.3f} wall, {warm_cpu / cold_cpu:.3f} CPU  (target <= 0.10)")
    if before_runs:
        b_warm, b_cpu = min(before_runs)
        print(f"before ({args.before}): warm {b_warm:.2f} s wall, {b_cpu:.2f} s CPU (best of {args.warm}); "
              f"warm / cold = {b_warm / cold:.3f} wall, {b_cpu / cold_cpu:.3f} CPU")
    if args.profile:
        profile(cmd, env, work)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
