"""Benchmark: exact top-k retrieval over a million documents (gate.search.top_k), time and peak memory.

Builds a seeded ``--docs x --dim`` float32 matrix of L2-normalized random "document" vectors in
place (row blocks drawn straight into the matrix: no float64 or full-size temporary) and
``--queries`` queries (each a noisy copy of a random document, so every query has a clear best
match), runs ``top_k(k=--k)`` once and prints:

- the matrix size in bytes;
- the search's wall time and CPU time (all threads; steadier than wall time on a shared machine),
  queries/s and the GFLOP/s of its products;
- the peak resident memory (VmHWM) while searching, as the increase over the process's RSS
  before the matrix was allocated, and its ratio to the matrix size (issue 7 target: <= 1.3,
  the matrix itself included); the peak while building the matrix is reset first
  (``/proc/self/clear_refs``) and printed separately;
- a check on ``--check`` queries against a brute-force full sort (``np.argsort`` of all scores).

Linux only (reads /proc/self/status). Defaults need ~1.6 GB.

Run:  .venv/bin/python bench/bench_retrieval_1m.py [--docs 1000000] [--dim 384] [--queries 1000]
"""

from __future__ import annotations

import argparse
import inspect
import re
import resource
import time
from pathlib import Path

import numpy as np

from gate.search import top_k

STATUS = Path("/proc/self/status")


def _kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.M).group(1)) * 1024


def rss() -> int:
    return _kib("VmRSS")


def peak() -> int:
    return _kib("VmHWM")


def reset_peak() -> bool:
    """Set the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def normalize_rows(block: np.ndarray) -> None:
    norms = np.sqrt(np.einsum("ij,ij->i", block, block))
    block /= norms[:, None]


def build(n: int, dim: int, seed: int, rows: int = 16384) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, rows):
        block = matrix[start:start + rows]
        rng.standard_normal(out=block, dtype=np.float32)
        normalize_rows(block)
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--query-chunk", type=int, help="default: top_k's")
    parser.add_argument("--corpus-chunk", type=int, help="default: top_k's")
    parser.add_argument("--check", type=int, default=20, help="queries checked against a full sort (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    defaults = {p.name: p.default for p in inspect.signature(top_k).parameters.values()}
    base = rss()
    start = time.perf_counter()
    corpus = build(args.docs, args.dim, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    targets = rng.integers(0, args.docs, args.queries)
    queries = corpus[targets] + rng.standard_normal((args.queries, args.dim), dtype=np.float32) * 0.05
    normalize_rows(queries)
    built = time.perf_counter() - start
    build_peak = peak() - base
    matrix = corpus.nbytes
    print(f"corpus {args.docs:,} x {args.dim} float32 = {matrix:,} bytes ({matrix / 2**20:,.0f} MiB), "
          f"{args.queries:,} queries, k={args.k}, chunks {args.query_chunk or defaults['query_chunk']} x "
          f"{args.corpus_chunk or defaults['corpus_chunk']}")
    print(f"built in {built:.1f} s; peak while building: {build_peak / matrix:.3f} x matrix")

    if not reset_peak():
        print("note: /proc/self/clear_refs is not writable: the search peak below includes the build's")
    start, cpu = time.perf_counter(), time.process_time()
    chunks = {name: value for name, value in (("query_chunk", args.query_chunk), ("corpus_chunk", args.corpus_chunk))
              if value}
    idx, scores = top_k(queries, corpus, args.k, **chunks)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    search_peak = peak() - base
    gflops = 2 * args.queries * args.docs * args.dim / took / 1e9
    print(f"top_k: {took:.2f} s wall, {cpu:.2f} s CPU (all threads) "
          f"({args.queries / took:,.0f} queries/s, {gflops:.0f} GFLOP/s of products)")
    print(f"peak RSS while searching: {search_peak:,} bytes over the pre-matrix RSS "
          f"= {search_peak / matrix:.3f} x matrix  (target <= 1.3, matrix included)")
    print(f"  (ru_maxrss of the whole process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB, "
          f"pre-matrix RSS {base / 2**20:,.0f} MiB)")
    hit = float(np.mean(idx[:, 0] == targets))
    print(f"queries whose own document ranks first: {hit:.3f}")

    if args.check:
        sample = np.random.default_rng(args.seed + 2).choice(args.queries, min(args.check, args.queries),
                                                             replace=False)
        full = queries[sample] @ corpus.T
        want = np.argsort(-full, axis=1, kind="stable")[:, :args.k]
        same = np.array_equal(idx[sample], want)
        diff = float(np.max(np.abs(scores[sample] - np.take_along_axis(full, want, 1))))
        print(f"brute-force check on {len(sample)} queries: indices {'identical' if same else 'DIFFER'}, "
              f"max score difference {diff:.2e}")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
