"""Benchmark: encoding throughput of the sentence-transformers provider, CPU against GPU (fp32 and fp16).

Encodes the Cranfield abstracts of the demo data (1,400 real documents, titles prepended as the
retrieval task does; ``--repeat`` copies them, each copy made unique so nothing is deduplicated)
through gate's provider (:class:`gate.providers.sentence_transformers.SentenceTransformerEmbedder`,
the path ``gate run`` takes: length-sorted batches, pieces of 16,384 texts), once per setting:

- ``cpu``: float32 on the CPU (batch size 16, gate's CPU default);
- ``cuda fp32`` and ``cuda fp16``: on the GPU, when CUDA is available (batch size 128, gate's GPU default;
  fp16 is what ``dtype: auto`` picks there).

For each: texts/s (after one warm-up batch), the speed-up over the CPU, and for fp16 the smallest cosine
between its vectors and fp32's. Prints that CUDA is unavailable instead of GPU rows on a machine without.

Run:  .venv/bin/python bench/bench_encode.py [--model default] [--repeat 1] [--cpu-texts 1400]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "examples" / "demo" / "data" / "cranfield" / "corpus.jsonl"


def texts(repeat: int) -> list[str]:
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    base = [f"{r['title']} {r['text']}" if r.get("title") else r["text"] for r in rows]
    return [t if copy == 0 else f"{t} ({copy})" for copy in range(repeat) for t in base]


def measure(model: str, device: str, dtype: str, batch: int, data: list[str]) -> tuple[float, np.ndarray]:
    from gate.providers.sentence_transformers import SentenceTransformerEmbedder
    from gate.suite import ModelSpec

    spec = ModelSpec("sentence-transformers", model,
                     (("batch_size", batch), ("device", device), ("dtype", dtype)))
    embedder = SentenceTransformerEmbedder.load(spec)
    embedder.encode(data[:batch])  # loads the model, warms the kernels
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    start = time.perf_counter()
    out = embedder.encode(data)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return len(data) / (time.perf_counter() - start), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="a sentence-transformers folder, or default")
    parser.add_argument("--repeat", type=int, default=1, help="copies of the 1,400 abstracts for the GPU runs")
    parser.add_argument("--cpu-texts", type=int, default=1400, help="texts encoded on the CPU (it is slow)")
    args = parser.parse_args()

    import torch

    data = texts(args.repeat)
    lengths = [len(t) for t in data]
    print(f"{len(data):,} Cranfield abstracts, {np.mean(lengths):.0f} characters on average; model {args.model}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    cpu_rate, _ = measure(args.model, "cpu", "float32", 16, data[:args.cpu_texts])
    print(f"  cpu  fp32 (batch 16):  {cpu_rate:9,.0f} texts/s on {min(args.cpu_texts, len(data)):,} texts")
    if not torch.cuda.is_available():
        print("CUDA is not available here: no GPU rows (run this on a machine with a GPU)")
        return
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    fp32_rate, fp32 = measure(args.model, "cuda", "float32", 128, data)
    fp16_rate, fp16 = measure(args.model, "cuda", "float16", 128, data)
    cos = np.sum(fp32 * fp16, axis=1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(fp16, axis=1))
    print(f"  cuda fp32 (batch 128): {fp32_rate:9,.0f} texts/s  = {fp32_rate / cpu_rate:6.1f} x the CPU")
    print(f"  cuda fp16 (batch 128): {fp16_rate:9,.0f} texts/s  = {fp16_rate / cpu_rate:6.1f} x the CPU, "
          f"{fp16_rate / fp32_rate:.2f} x fp32; smallest cosine to fp32 {cos.min():.5f}")


if __name__ == "__main__":
    main()
