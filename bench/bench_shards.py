"""Benchmark: a sharded run (N shards + gate merge) against the single run, as subprocesses.

Each shard runs with its own empty cache, as separate CI runners would. The figure of merit is
the wall time of the sharded job when the N shards run in parallel on N machines (the slowest
shard plus the merge) divided by the single run's wall time; the sum of the shards shows the
extra work sharding costs (every shard loads both models, and a retrieval shard still encodes
the whole corpus). The merged results are checked against the single run's metrics (equal when
the vectors are equal; see gate/shards.py for when they are not).

Default suite: the probes example (examples/probes, real BANKING77 and STS-B rows: pairs, triplets,
geometry, holdout) with the default model on both sides (``--candidate`` for another model folder).

    .venv/bin/python bench/bench_shards.py [--suite SUITE] [--shards 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATE = [sys.executable, "-m", "gate"]


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(GATE + args, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"gate {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "examples/probes/suite.yaml")
    parser.add_argument("--candidate", default="sentence-transformers:default")
    parser.add_argument("--shards", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = [str(args.suite), "--candidate", args.candidate, "-q"]
        single = _timed(["run", *common, "--out", str(tmp / "single"), "--cache", str(tmp / "c-single")])
        shard_times = [_timed(["run", *common, "--out", str(tmp / f"s{i}"), "--cache", str(tmp / f"c{i}"),
                               "--shard", f"{i}/{args.shards}"]) for i in range(1, args.shards + 1)]
        merge = _timed(["merge", *[str(tmp / f"s{i}") for i in range(1, args.shards + 1)],
                        "--out", str(tmp / "merged"), "-q", "--suite", str(args.suite)])
        a = json.loads((tmp / "single" / "results.json").read_text())["metrics"]
        b = json.loads((tmp / "merged" / "results.json").read_text())["metrics"]
        worst = max(abs(a[k]["candidate"] - b[k]["candidate"]) for k in a
                    if a[k]["candidate"] is not None and b[k]["candidate"] is not None)
    parallel = max(shard_times) + merge
    print(f"suite {args.suite.relative_to(ROOT) if args.suite.is_relative_to(ROOT) else args.suite}, "
          f"{args.shards} shards, cold caches")
    print(f"single run               {single:8.1f} s")
    print(f"shards                   {', '.join(f'{t:.1f}' for t in shard_times)} s (sum {sum(shard_times):.1f} s)")
    print(f"merge                    {merge:8.1f} s")
    print(f"sharded, in parallel     {parallel:8.1f} s = {parallel / single:.2f} x the single run")
    print(f"sharded, one machine     {sum(shard_times) + merge:8.1f} s = {(sum(shard_times) + merge) / single:.2f} x")
    print(f"largest metric difference merged vs single (independent encodes): {worst:.3g}")


if __name__ == "__main__":
    main()
