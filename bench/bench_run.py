"""Benchmark: gate run vs pure model.encode vs sentence-transformers' evaluators, on the same data.

Prints, for one suite (default: the demo suite, baseline = embedded default model,
candidate = the demo fine-tune, trained and cached first if needed):

- gate:       wall time of gate's whole run in-process (load both models, fingerprint,
              read data, encode unique texts once, top-k, metrics, rules), no embedding cache;
- encode:     pure ``model.encode`` of the same unique texts, models already loaded;
- evaluators: EmbeddingSimilarityEvaluator + InformationRetrievalEvaluator on the same tasks
              for both models, models already loaded.

Targets (issue 3): gate <= 1.10 x encode, and gate faster than the evaluators.

    .venv/bin/python bench/bench_run.py [--suite SUITE --candidate PATH] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, help="suite file (default: examples/demo/suite.yaml)")
    parser.add_argument("--candidate", type=Path, help="candidate model folder (default: the demo fine-tune)")
    parser.add_argument("--cache", type=Path, default=Path(".gate-cache"), help="where the demo fine-tune is cached")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the minimum of each is reported")
    args = parser.parse_args()

    import torch
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        InformationRetrievalEvaluator,
    )

    from gate.demo import demo_files, train_candidate
    from gate.providers import load_embedder
    from gate.runner import run_suite
    from gate.suite import ModelSpec, load_suite
    from gate.tasks import load_task

    files = demo_files()
    suite = load_suite(args.suite or files.suite)
    cand_path = args.candidate or train_candidate(files, args.cache, log=lambda m: print(m, file=sys.stderr))
    overrides = {"candidate": ModelSpec("sentence-transformers", str(cand_path))}
    if "baseline" not in suite.models:
        overrides["baseline"] = ModelSpec("sentence-transformers", "default")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")

    tasks = [load_task(t) for t in suite.tasks]
    texts = list(dict.fromkeys(t for task in tasks for t in task.texts()))
    specs = [overrides.get("baseline") or suite.models["baseline"], overrides["candidate"]]
    models = [load_embedder(s) for s in specs]
    for m in models:  # warm-up: the first encode in a process pays one-time allocation costs
        m.model.encode(texts[:64], batch_size=m.batch_size)
    print(f"{len(texts):,} unique texts x {len(models)} models, batch size {models[0].batch_size}")

    def gate_run() -> float:
        # end to end in-process, cold (no embedding cache): load, fingerprint, read, encode, score, decide
        start = time.perf_counter()
        run_suite(suite, overrides=overrides)
        return time.perf_counter() - start

    def pure_encode() -> float:
        start = time.perf_counter()
        for m in models:
            m.model.encode(texts, batch_size=m.batch_size, convert_to_numpy=True)
        return time.perf_counter() - start

    def evaluators() -> float:
        start = time.perf_counter()
        for m in models:
            for task in tasks:
                if task.data.spec.type == "sts":
                    EmbeddingSimilarityEvaluator(task.s1, task.s2, task.gold.tolist(), write_csv=False,
                                                 batch_size=m.batch_size)(m.model)
                elif task.data.spec.type == "retrieval":
                    relevant: dict[str, set[str]] = {}
                    for q, d, r in zip(task.q_idx, task.d_idx, task.rel):
                        if r > 0:
                            relevant.setdefault(str(q), set()).add(task.doc_ids[d])
                    ks = task.ks
                    InformationRetrievalEvaluator(
                        {str(i): t for i, t in enumerate(task.queries)}, dict(zip(task.doc_ids, task.docs)),
                        relevant, mrr_at_k=ks, ndcg_at_k=ks, accuracy_at_k=ks, precision_recall_at_k=ks,
                        map_at_k=ks, batch_size=m.batch_size, write_csv=False)(m.model)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"gate run": [], "encode": [], "evaluators": []}
    for r in range(args.rounds):
        for name, fn in (("encode", pure_encode), ("gate run", gate_run), ("evaluators", evaluators)):
            times[name].append(fn())
            print(f"round {r + 1}: {name:10s} {times[name][-1]:8.2f} s", flush=True)
    t_gate, t_encode, t_eval = (min(times[k]) for k in ("gate run", "encode", "evaluators"))
    print(f"min over {args.rounds} round(s): gate {t_gate:.2f} s, encode {t_encode:.2f} s, evaluators {t_eval:.2f} s")
    print(f"gate / encode     = {t_gate / t_encode:.3f}  (target <= 1.10)")
    print(f"gate / evaluators = {t_gate / t_eval:.3f}  (target < 1.00)")


if __name__ == "__main__":
    main()
