"""Benchmark: wall time of ``gate --help`` and ``gate run --help`` (issue 7 target: <= 0.5 s).

Each command runs as a fresh process (the installed console script, as a user types it),
once to warm the OS file cache, then ``--rounds`` times; the best and the median are printed,
next to a bare ``python -c pass`` for the interpreter's own start-up. Also lists any heavy
module (numpy, torch, transformers, sentence_transformers, scipy, sklearn) that ``--help`` imports:
there should be none.

Run:  .venv/bin/python bench/bench_help.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("numpy", "torch", "transformers", "sentence_transformers", "scipy", "sklearn", "httpx", "jsonschema")


def gate_command() -> list[str]:
    script = Path(sys.executable).parent / "gate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gate"]


def wall(cmd: list[str], rounds: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def heavy_imports(args: list[str]) -> list[str]:
    code = ("import sys; from gate.cli import cli\n"
            "try:\n    cli.main(args=sys.argv[1:], prog_name='gate')\nexcept SystemExit:\n    pass\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    return proc.stderr.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    gate = gate_command()
    cases = [("python -c pass", [sys.executable, "-c", "pass"], None),
             ("gate --help", gate + ["--help"], ["--help"]),
             ("gate run --help", gate + ["run", "--help"], ["run", "--help"]),
             ("gate --version", gate + ["--version"], ["--version"])]
    print(f"{'command':<18} {'best s':>7} {'median s':>9}  heavy modules imported")
    worst = 0.0
    for label, cmd, cli_args in cases:
        times = wall(cmd, args.rounds)
        heavy = "" if cli_args is None else (", ".join(heavy_imports(cli_args)) or "none")
        print(f"{label:<18} {min(times):7.3f} {statistics.median(times):9.3f}  {heavy}")
        if cli_args is not None:
            worst = max(worst, min(times))
    print(f"slowest gate help, best of {args.rounds}: {worst:.3f} s  (target <= 0.5 s)")


if __name__ == "__main__":
    main()
