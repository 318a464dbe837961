"""Benchmark: a whole ``gate run`` on a 1 M-document retrieval task, peak memory vs the corpus matrix.

``bench_retrieval_1m.py`` measures the search step alone. This one runs the runner end to end
(:func:`gate.runner.run_suite`: read the files, embed, cache, search, score, compare) on a generated
corpus of ``--docs`` short documents and ``--queries`` queries, with two models (baseline and
candidate), in three modes, each in a fresh process:

- ``nocache``: no embedding cache;
- ``cold``: an empty embedding cache (every vector is computed and written);
- ``warm``: the same cache again (every vector is read back).

The models are a stand-in embedder injected at the runner's ``loader`` seam: seeded random unit
vectors of ``--dim`` dimensions, written in blocks (encoding a million texts with a real model takes
hours on 2 CPU cores; what is measured here is what gate itself holds). Retrieval quality is not
the point; the three modes must give identical metrics, and the script checks that.

Printed for each mode: wall time, and the peak resident memory (VmHWM) over the process's RSS
before the run, both as bytes and as a ratio to one model's float32 corpus matrix (issue 7 target:
<= 1.3). Reading a JSON Lines corpus costs memory of its own (the texts, and the parser's freed
rows); the RSS once the files are read is printed too, with the peak above it, which is what
embedding, caching and searching add.

Linux only (reads /proc/self/status). Defaults need ~2.5 GB of memory and ~4 GB of disk (cache).

Run:  .venv/bin/python bench/bench_run_1m.py [--docs 1000000] [--queries 1000] [--dim 384]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STATUS = Path("/proc/self/status")


def _bytes(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.M).group(1)) * 1024


class RandomEmbedder:
    """Seeded random vectors in blocks (no full-size float64 temporary), one seed per model spec."""

    def __init__(self, spec, dim: int):
        self.spec, self.dim = spec.spec, dim
        self.seed = len(spec.options)

    def fingerprint(self) -> str:
        return f"sha256:random-{self.seed}"

    def encode(self, texts, *, show_progress: bool = False) -> np.ndarray:
        out = np.empty((len(texts), self.dim), np.float32)
        rng = np.random.default_rng(self.seed)
        for start in range(0, len(texts), 65536):
            rng.standard_normal(out=out[start:start + 65536], dtype=np.float32)
        return out


def write_data(work: Path, docs: int, queries: int) -> Path:
    corpus = work / f"corpus-{docs}.jsonl"
    if not corpus.exists():
        with open(corpus, "w") as fh:
            for i in range(docs):
                fh.write(json.dumps({"id": f"d{i}", "text": f"document {i} on topic {i % 997} and {i % 13}"}) + "\n")
    with open(work / "queries.jsonl", "w") as fq, open(work / "qrels.jsonl", "w") as fr:
        for j in range(queries):
            d = (j * 7919) % docs
            fq.write(json.dumps({"id": f"q{j}", "text": f"query about document {d}"}) + "\n")
            fr.write(json.dumps({"query_id": f"q{j}", "doc_id": f"d{d}", "relevance": 1}) + "\n")
    suite = work / "suite.yaml"
    suite.write_text(f"""version: 1
name: bench-1m
models:
  baseline: {{provider: sentence-transformers, model: default}}
  candidate: {{provider: sentence-transformers, model: default, max_seq_length: 128}}
tasks:
  - {{name: big, type: retrieval, group: target, queries: queries.jsonl, corpus: {corpus.name},
      qrels: qrels.jsonl, k: [10]}}
""")
    return suite


def child(suite_path: Path, mode: str, dim: int, cache_dir: Path) -> dict:
    """One mode in this process: run the suite and measure."""
    from gate.cache import EmbeddingCache
    from gate.runner import run_suite
    from gate.suite import load_suite

    suite = load_suite(suite_path)
    cache = EmbeddingCache(cache_dir) if mode != "nocache" else None
    base = _bytes("VmRSS")
    read = {}

    def log(message: str) -> None:
        if "model" in message and "loading" in message and not read:  # the files are read: the data plateau
            read["rss"] = _bytes("VmRSS") - base

    Path("/proc/self/clear_refs").write_text("5")  # the peak mark starts at the current RSS
    start = time.perf_counter()
    out = run_suite(suite, loader=lambda spec: RandomEmbedder(spec, dim), cache=cache, log=log, resamples=200)
    took = time.perf_counter() - start
    metrics = {k: (v["baseline"], v["candidate"]) for k, v in out.results["metrics"].items()}
    return {"seconds": took, "peak": _bytes("VmHWM") - base, "read": read.get("rss", 0),
            "errors": out.results["errors"], "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--work", type=Path, help="folder for the data and the cache (default: a temporary one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.work / "suite.yaml", args.child, args.dim, args.work / "cache")))
        return

    with tempfile.TemporaryDirectory(prefix="gate-bench-1m-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print(f"writing {args.docs:,} documents and {args.queries:,} queries to {work}", flush=True)
        write_data(work, args.docs, args.queries)
        matrix = args.docs * args.dim * 4
        print(f"one model's corpus matrix: {args.docs:,} x {args.dim} float32 = {matrix / 2**20:,.0f} MiB; "
              "two models; target peak <= 1.3 x matrix")
        seen = None
        for mode in ("nocache", "cold", "warm"):
            done = subprocess.run([sys.executable, __file__, "--child", mode, "--work", str(work),
                                   "--dim", str(args.dim)], check=True, capture_output=True, text=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            if r["errors"]:
                raise SystemExit(f"{mode}: the run recorded errors: {r['errors']}")
            print(f"{mode:>8}: {r['seconds']:6.1f} s; peak RSS over the pre-run RSS {r['peak'] / 2**20:,.0f} MiB "
                  f"= {r['peak'] / matrix:.2f} x matrix; after reading the files {r['read'] / 2**20:,.0f} MiB, "
                  f"peak above that {(r['peak'] - r['read']) / 2**20:,.0f} MiB = "
                  f"{(r['peak'] - r['read']) / matrix:.2f} x matrix", flush=True)
            if seen is not None and r["metrics"] != seen:
                raise SystemExit(f"{mode}: the metrics differ from the run without a cache")
            seen = r["metrics"]
        cache = work / "cache" / "embeddings.sqlite3"
        print(f"embedding cache file: {cache.stat().st_size / 2**30:.2f} GiB for {2 * (args.docs + args.queries):,} "
              f"vectors ({cache.stat().st_size / (2 * (args.docs + args.queries)):,.0f} bytes each)")
        print("metrics identical in the three modes")


if __name__ == "__main__":
    main()
