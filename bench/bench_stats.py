"""Benchmark: the cost of the paired statistics (CI + p-value) per metric, as ``gate run`` computes them.

Every metric of a run gets a paired bootstrap CI and a permutation p-value (gate.compare).
Means of one value per example take the vectorized path; other metrics (Spearman, BLEU,
latency percentiles) are recomputed on every resample, in batches of resamples (Spearman
from value codes, no sort per resample; BLEU's statistics summed for all resamples at once). This prints, for realistic sizes,
the seconds per metric at the default 2000 resamples and the peak extra memory, so a
change that makes the statistics dominate a run shows up here rather than in a timed test.

Data: real STS-B test gold scores (examples/demo/data/stsb/test.jsonl) with seeded cosine
proxies; retrieval-like per-query values and 0/1 outcomes drawn from a seeded generator.

Run:  .venv/bin/python bench/bench_stats.py [--resamples 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np

from gate.compare import compare_metric
from gate.metrics import MetricDef, mean_of
from gate.metrics.correlation import spearman
from gate.scorers import get as get_scorer
from gate.tasks.generative import usage_metrics
from gate.tasks.sts import METRICS as sts_metrics

ROOT = Path(__file__).resolve().parent.parent


def _stsb() -> tuple[dict, dict]:
    rows = [json.loads(line) for line in (ROOT / "examples/demo/data/stsb/test.jsonl").read_text().splitlines()
            if line.strip()]
    gold = np.array([r["score"] for r in rows], dtype=np.float64)
    b = gold / 5 + np.random.default_rng(1).normal(0, 0.15, len(gold))
    c = gold / 5 + np.random.default_rng(2).normal(0, 0.15, len(gold))
    return {"cosine": b, "gold": gold}, {"cosine": c, "gold": gold}


def _cases():
    rng = np.random.default_rng(0)
    sts_b, sts_c = _stsb()
    spearman_def, pearson_def = sts_metrics
    out = [("stsb/spearman (n=%d, batched ranks)" % len(sts_b["gold"]), spearman_def, sts_b, sts_c),
           ("stsb/pearson (n=%d, batched)" % len(sts_b["gold"]), pearson_def, sts_b, sts_c),
           ("stsb/spearman, unbatched loop (for comparison)",
            MetricDef("spearman", True, lambda a: spearman(a["cosine"], a["gold"])), sts_b, sts_c)]
    for n in (1_000, 100_000):
        b = {"ndcg": rng.random(n)}
        c = {"ndcg": np.clip(b["ndcg"] + rng.normal(0.01, 0.1, n), 0, 1)}
        out.append((f"ndcg@10 mean (n={n:,}, sign-flip)", MetricDef("ndcg@10", True, mean_of("ndcg")), b, c))
    b = {"pass": rng.integers(0, 2, 10_000).astype(float)}
    c = {"pass": np.where(rng.random(10_000) < 0.1, 1 - b["pass"], b["pass"])}
    out.append(("pass_rate (n=10,000, McNemar)", MetricDef("pass_rate", True, mean_of("pass")), b, c))
    lat_b = {"latency_ms": rng.gamma(2, 50, (500, 3))}
    lat_c = {"latency_ms": rng.gamma(2, 55, (500, 3))}
    p99 = next(m for m in usage_metrics() if m.name == "latency_p99_ms")
    out.append(("latency_p99_ms (500 cases x 3 samples, batched)", p99, lat_b, lat_c))
    bleu = get_scorer("bleu").metrics[0]  # batched where gate has corpus_bleu_rows, a loop before
    matches = rng.integers(0, 8, size=(500, 1, 4)).astype(float)
    stats = np.concatenate([matches, matches + rng.integers(0, 5, size=(500, 1, 4)),
                            rng.integers(5, 20, size=(500, 1, 2)).astype(float)], axis=2)
    other = stats.copy()
    other[:, :, 0:4] = np.maximum(other[:, :, 0:4] - rng.integers(0, 2, size=(500, 1, 4)), 0)
    out.append(("generation/bleu (500 cases, corpus BLEU)", bleu, {"bleu_stats": stats}, {"bleu_stats": other}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"resamples {args.resamples}, best of {args.rounds} rounds")
    print(f"{'metric':<48} {'seconds':>8} {'peak MiB':>9}  test")
    for label, metric, b, c in _cases():
        best = float("inf")
        for _ in range(args.rounds):
            start = time.perf_counter()
            got = compare_metric(metric, "bench/" + metric.name, b, c, resamples=args.resamples)
            best = min(best, time.perf_counter() - start)
        tracemalloc.start()
        compare_metric(metric, "bench/" + metric.name, b, c, resamples=args.resamples)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"{label:<48} {best:>8.3f} {peak:>9.1f}  {got['test']}")


if __name__ == "__main__":
    main()
