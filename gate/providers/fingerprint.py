"""Model folders: their fingerprint, and the checks that keep loading one from running its code.

Two runs that report the same fingerprint evaluated the same bytes, whatever the
folder was called; a retrained model that kept its path gets a new fingerprint.
Documentation files are left out so editing a model card does not change it.

A model folder usually comes with the pull request, so it is the attacker's. The
libraries refuse custom code without ``trust_remote_code`` (which gate never sets),
but gate checks the folder itself before any library reads it, whatever their
version: :func:`check_folder` refuses links out of the folder, pickle weights
without safetensors, and config fields that name code or files outside the folder.
Every refusal is bad input (exit 2) naming the file, the field and what was expected.
A snapshot downloaded from the Hugging Face Hub (:mod:`gate.hub`) gets the same checks:
anyone can push to a repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Iterable, Iterator

from gate.documents import pointer_of
from gate.errors import BadInput

_IGNORED_NAMES = {"README.md", ".gitattributes", ".DS_Store"}
_IGNORED_DIRS = {".git", "__pycache__", ".cache"}

#: files torch, joblib or pickle would unpickle: loading one can run any code it names
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill")
#: what transformers loads with ``use_safetensors=True``, and sentence-transformers modules load before
#: ``pytorch_model.bin``: a folder with pickle weights must have one of these beside them
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
CONVERT_HINT = ("load them where you trust them and save them again as safetensors, with "
                "SentenceTransformer(folder).save(folder) or AutoModelForCausalLM.from_pretrained(folder)"
                ".save_pretrained(folder) (both write model.safetensors), then delete the pickle files")
#: a config bigger than this is not a config (tokenizer configs with many added tokens stay far below)
MAX_CONFIG_BYTES = 64 << 20

#: config keys that make transformers or sentence-transformers import code, when they hold a truthy value
_CODE_KEYS = {
    "auto_map": "names custom code classes, which would run code from the folder",
    "custom_pipelines": "names custom pipeline code, which would run code from the folder",
    "trust_remote_code": "asks for custom code to run",
    "use_kernels": "asks for compute kernels downloaded from the hub",
    "kernel_config": "asks for compute kernels downloaded from the hub",
}
#: config keys whose value the libraries use as a class or type name (looked up, never imported
#: as a path): a dotted or odd value is not a name they know
_NAME_KEYS = ("model_type", "tokenizer_class", "processor_class", "image_processor_type",
              "feature_extractor_type", "video_processor_type")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
#: config keys that name a file or folder for a library to open. Some library versions open the value as given,
#: relative to the working directory (the checked-out pull request, whose .git/config may hold a token), so
#: only a bare file name passes. ``name_or_path`` and ``_name_or_path`` only record where a model was saved
#: from: the libraries overwrite or ignore them.
_FILE_KEY = re.compile(r".*_(file|files|dir|folder|path)")
_RECORD_KEYS = ("name_or_path", "_name_or_path")
#: config keys that name another model to load (a hub id, or a folder relative to the working directory)
_OTHER_MODEL_KEYS = ("tokenizer_name_or_path", "model_name_or_path", "pretrained_model_name_or_path",
                     "base_model_name_or_path")
#: a dotted activation function of a Dense module: a torch.nn class (sentence-transformers 6.0 and 6.1
#: instantiate any ``torch.*`` callable named here; 6.2 only an ``nn.Module`` class)
_TORCH_ACTIVATION = re.compile(r"torch\.nn(\.[a-z_][a-z0-9_]*)*\.[A-Z][A-Za-z0-9_]*")


def _walk(path: Path, prune: bool = False) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` of the folder without following links; ``prune`` skips the ignored folders (for the
    fingerprint only: the checks look everywhere, since a module ``path`` may name ``.cache`` too)."""
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not (prune and d in _IGNORED_DIRS))
        yield Path(root), dirs, sorted(files)


def folder_files(path: Path, everything: bool = False) -> list[Path]:
    """Every file and link in the folder (links not followed), sorted; unless ``everything``, without the
    documentation and ignored folders the fingerprint leaves out."""
    found: list[Path] = []
    for root, dirs, files in _walk(path, prune=not everything):
        found.extend(root / name for name in files if everything or name not in _IGNORED_NAMES)
        found.extend(root / name for name in dirs if (root / name).is_symlink())
    return sorted(found)


def fingerprint_dir(path: Path, *, blobs: Path | None = None, select: Callable[[str], bool] | None = None) -> str:
    """sha256 over every file's relative path, size and bytes. A link is hashed as its target's name,
    never followed: a link out of a pull request's folder must not make gate read the runner's files.

    For a snapshot of the Hugging Face cache, ``blobs`` is its blobs folder: a link to a file there is
    hashed as that file (the same bytes as in a local folder give the same fingerprint), and ``select``
    keeps only the files gate downloads (``/`` paths), whatever else another tool put in the cache."""
    digest = hashlib.sha256()
    for file in folder_files(path):
        relative = file.relative_to(path).as_posix()
        if select is not None and not select(relative):
            continue
        rel = relative.encode()
        digest.update(len(rel).to_bytes(8, "little") + rel)
        if file.is_symlink() and not blob_link(file, blobs):
            target = os.readlink(file).encode()
            digest.update(b"link" + len(target).to_bytes(8, "little") + target)
            continue
        digest.update(file.stat().st_size.to_bytes(8, "little"))
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


# -- checks before loading ------------------------------------------------------------------------------------


def check_folder(path: Path, where: str, blobs: Path | None = None) -> None:
    """All the folder-wide checks, cheap (no torch, only small JSON files read). ``where`` names the model
    (``model sentence-transformers:./cand``) in every message; ``blobs``: see :func:`blob_link`."""
    check_links(path, where, blobs)
    check_pickle_weights(path, where)
    check_configs(path, where)
    check_safetensors_indexes(path, where)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def blob_link(file: Path, blobs: Path | None) -> bool:
    """Whether ``file`` is a link of a Hugging Face cache snapshot to a file of its ``blobs`` folder (the cache
    keeps each file once there and links it from every commit's ``snapshots/<commit>/``). Only the blobs
    folder of a snapshot gate downloaded itself is passed, it may not be a link itself, and the target must
    be a regular file directly in it: no link through it reaches the runner's other files."""
    if blobs is None or not file.is_symlink() or blobs.is_symlink():
        return False
    target = file.resolve()
    return target.parent == blobs.resolve() and target.is_file()


def check_links(path: Path, where: str, blobs: Path | None = None) -> None:
    """No link may lead out of the folder: a ``vocab.txt`` linked to ``/proc/self/environ`` would make the
    runner's secrets the tokenizer's vocabulary, and a model's output could then spell them out. The one
    exception: a downloaded snapshot's links to its cache's ``blobs`` (see :func:`blob_link`)."""
    for file in folder_files(path, everything=True):
        if file.is_symlink() and not _inside(file, path) and not blob_link(file, blobs):
            raise BadInput(f"{where}: {file.relative_to(path).as_posix()} is a link to {os.readlink(file)!r}, "
                           "outside the model folder; expected the folder to hold its own files (copy them in)",
                           where=file)


def _pickle_files(names: list[str]) -> list[str]:
    # OpenVINO exports keep their (non-pickle) weights in openvino_model.bin; gate never loads them
    return [n for n in names if n.lower().endswith(PICKLE_SUFFIXES) and not n.startswith("openvino_")]


def pickle_without_safetensors(names: Iterable[str]) -> str | None:
    """The first pickle file (a ``/`` path) of a listing of a repository's files whose folder has no
    safetensors weights beside it; None when there is none. The rule of :func:`check_pickle_weights`, for
    a repository on the Hub, whose pickle files gate never downloads."""
    folders: dict[str, list[str]] = {}
    for name in sorted(names):
        folder, _, base = name.rpartition("/")
        folders.setdefault(folder, []).append(base)
    for folder, files in folders.items():
        pickles = _pickle_files(files)
        if pickles and not any(name in files for name in SAFETENSORS_WEIGHTS):
            return f"{folder}/{pickles[0]}" if folder else pickles[0]
    return None


def check_pickle_weights(path: Path, where: str) -> None:
    """Weights come from safetensors only. A folder that holds pickle files (``pytorch_model.bin``, ``*.pt``,
    ...) must hold ``model.safetensors`` beside them, which every loader prefers; without it,
    sentence-transformers modules would ``torch.load`` the pickle, and unpickling can run code."""
    for root, _dirs, files in _walk(path):
        pickles = _pickle_files(files)
        if pickles and not any(name in files for name in SAFETENSORS_WEIGHTS):
            folder = root.relative_to(path)
            raise BadInput(f"{where}: {pickles[0]} holds pickle weights (loading them can run code) and "
                           f"{'the model folder' if folder == Path('.') else folder.as_posix()} has no "
                           f"{' or '.join(SAFETENSORS_WEIGHTS)}; expected safetensors weights: {CONVERT_HINT}",
                           where=root / pickles[0])


def read_json(file: Path, where: str) -> Any:
    """A config file of the folder, parsed; unreadable, oversized or invalid JSON is bad input."""
    try:
        if file.stat().st_size > MAX_CONFIG_BYTES:
            raise BadInput(f"{where}: {file.stat().st_size} bytes; expected a JSON config of at most "
                           f"{MAX_CONFIG_BYTES >> 20} MiB", where=file)
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: invalid JSON: {exc.msg}; expected a JSON config",
                       where=file, location=f"{exc.lineno}:{exc.colno}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{where}: cannot read it: {exc}; expected a UTF-8 JSON config", where=file) from exc


def _config_files(path: Path) -> Iterator[Path]:
    """The JSON configs the libraries may read: ``config.json``, ``tokenizer_config.json``,
    ``sentence_bert_config.json``, ``generation_config.json``, ... (not ``tokenizer.json``, which is data).
    A link is read through: :func:`check_links` has made sure it stays inside the folder."""
    for root, _dirs, files in _walk(path):
        for name in files:
            if name.endswith("config.json"):
                yield root / name


def _entries(value: Any, pointer: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every ``(pointer, key, value)`` of the objects nested in ``value``, as JSON pointers."""
    stack = [(pointer, value)]
    while stack:
        at, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            child_at = at + pointer_of([key])
            if isinstance(node, dict):
                yield child_at, str(key), child
            stack.append((child_at, child))


def check_configs(path: Path, where: str) -> None:
    """Refuse config fields that would make the libraries import code or open files outside the folder
    (see :func:`config_problem`). With ``trust_remote_code`` unset they refuse custom code themselves;
    gate says so first, in one clear message, whatever the installed versions."""
    for file in _config_files(path):
        data = read_json(file, where)
        for pointer, key, value in _entries(data):
            problem = config_problem(key, value)
            if problem:
                raise BadInput(f"{where}: {problem}", where=file, location=pointer)


def config_problem(key: str, value: Any) -> str | None:
    """Why ``key: value`` in a model config would run code or leave the folder (None: it would not)."""
    if key in _CODE_KEYS and value:
        return (f"{key!r} {_CODE_KEYS[key]}; gate loads models without custom code (it never sets "
                "trust_remote_code): expected a model whose classes are part of transformers / sentence-transformers")
    if key == "weights_only" and value is False:
        return "'weights_only': false would let torch unpickle arbitrary objects; expected the field absent"
    if key == "transformers_weights" and value is not None:
        safetensors = isinstance(value, str) and value.endswith((".safetensors", ".safetensors.index.json"))
        if not (safetensors and _plain_name(value)):
            return (f"'transformers_weights' is {value!r}; expected the name of a *.safetensors file of the folder "
                    "(weights come from safetensors only)")
    if key in ("attn_implementation", "_attn_implementation") and isinstance(value, str) and "/" in value:
        return f"{key!r} is {value!r}, a kernel repository on the hub; expected a built-in attention such as 'sdpa'"
    if key in _NAME_KEYS and value is not None and not (isinstance(value, str) and _NAME.fullmatch(value)):
        return f"{key!r} is {value!r}; expected the bare name of a transformers class or model type"
    dotted = isinstance(value, str) and "." in value
    if key == "activation_function" and dotted and not _TORCH_ACTIVATION.fullmatch(value):
        return (f"'activation_function' is {value!r}, a path the library would import; expected a torch.nn "
                "activation class such as 'torch.nn.modules.activation.Tanh'")
    if key in _OTHER_MODEL_KEYS and value:
        return (f"{key!r} is {value!r}: the model would load files from elsewhere; expected the field absent "
                "(or null), so that everything comes from this folder")
    if _FILE_KEY.fullmatch(key) and key not in _RECORD_KEYS:
        bad = next((v for v in _strings(value) if not _plain_name(v)), None)
        if bad is not None:
            return (f"{key!r} is {bad!r}, a path a library may open outside the model folder; expected the bare "
                    "name of a file of the folder, or the field removed")
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from (v for v in value if isinstance(v, str))
    elif isinstance(value, dict):
        yield from (v for v in value.values() if isinstance(v, str))


def _plain_name(value: str) -> bool:
    """A bare file name: no folder part, nothing that leads elsewhere."""
    return relative_path_problem(value) is None and "/" not in value and "\\" not in value


def relative_path_problem(value: Any) -> str | None:
    """Why ``value`` is not a relative path that stays inside a folder (None: it is), in POSIX and
    Windows syntax both (``..``, ``/etc``, ``C:\\``, ``~``, NUL)."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if "\0" in value:
        return "it holds a NUL character"
    if posix.is_absolute() or windows.anchor:
        return "it is absolute"
    if ".." in posix.parts or ".." in windows.parts:
        return "it goes up with '..'"
    if value.startswith("~"):
        return "it starts with '~'"
    return None


def check_subpath(path: Path, value: Any, where: str, file: Path, pointer: str) -> Path:
    """``path / value`` for a folder a config names (a module's ``path``), refused when it would leave
    ``path``: textually (``..``, absolute) or through a link."""
    problem = relative_path_problem(value)
    target = path / value if problem is None else path
    if problem is None and not _inside(target, path):
        problem = "it leads outside the folder through a link"
    if problem is not None:
        raise BadInput(f"{where}: path {value!r} would load files from outside the model folder: {problem}; "
                       "expected a folder inside it, e.g. '1_Pooling' (or '' for the folder itself)",
                       where=file, location=pointer)
    return target


def check_safetensors_indexes(path: Path, where: str) -> None:
    """A sharded checkpoint's index names its shards: each must be a ``*.safetensors`` file beside it."""
    for root, _dirs, files in _walk(path):
        for name in files:
            if not name.endswith(".safetensors.index.json"):
                continue
            file = root / name
            data = read_json(file, where)
            weight_map = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(weight_map, dict):
                raise BadInput(f"{where}: no 'weight_map' object; expected a safetensors index", where=file)
            for tensor, shard in weight_map.items():
                if not (isinstance(shard, str) and _plain_name(shard) and shard.endswith(".safetensors")):
                    raise BadInput(f"{where}: shard {shard!r}; expected the name of a *.safetensors file beside "
                                   "the index", where=file,
                                   location=pointer_of(["weight_map", tensor]))
