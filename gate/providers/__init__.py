"""Model providers behind one small protocol.

A provider turns a :class:`~gate.suite.ModelSpec` into an :class:`Embedder`. The
runner only ever sees the protocol, so tests inject encoders with known outputs
and later providers (OpenAI-compatible endpoints) slot in without touching tasks.
Heavy imports (torch) happen inside ``load`` so ``gate --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from gate.suite import ModelSpec

if TYPE_CHECKING:
    from gate.hub import Resolver
    from gate.llm import Generator


class Embedder(Protocol):
    """A loaded embedding model."""

    spec: str

    def fingerprint(self) -> str:
        """A stable identity of the weights and config (``sha256:...``)."""

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Float32 matrix ``(len(texts), dim)``; need not be normalized (the runner does it once)."""


Loader = Callable[[ModelSpec], Embedder]
GeneratorLoader = Callable[..., "Generator"]

#: what each provider can do: "embed" (embedding tasks), "generate" (generative tasks)
CAPABILITIES = {
    "sentence-transformers": ("embed",),
    "openai": ("embed", "generate"),
    "transformers": ("generate",),
}


def check_model(spec: ModelSpec, secrets: bool = True, hub: "Resolver | None" = None) -> None:
    """Cheap checks before anything is loaded: a bad reference is bad input (exit 2).

    ``secrets=False`` skips what depends on the environment (API-key variables), for ``gate validate``.
    A Hugging Face Hub model (``ORG/NAME[@REVISION]``) is resolved and downloaded here by ``hub`` (one
    :class:`~gate.hub.Resolver` per run), then checked like a local folder; without ``hub`` (``gate
    validate``, ``--dry-run``) only the form of the reference is checked and nothing is downloaded."""
    if spec.provider == "sentence-transformers":
        from gate.providers import sentence_transformers as st

        st.check(spec, hub=hub)
    elif spec.provider == "openai":
        from gate.providers import openai_compat

        openai_compat.check(spec, secrets=secrets)
    elif spec.provider == "transformers":
        from gate.providers import transformers_lm

        transformers_lm.check(spec, hub=hub)
    else:
        raise AssertionError(f"unhandled provider {spec.provider}")  # the schema lists every provider


def load_embedder(spec: ModelSpec) -> Embedder:
    """Load the embedding model behind ``spec`` (raises :class:`~gate.errors.ModelLoadError`)."""
    if spec.provider == "sentence-transformers":
        from gate.providers import sentence_transformers as st

        return st.SentenceTransformerEmbedder.load(spec)
    if spec.provider == "openai":
        from gate.providers import openai_compat

        return openai_compat.OpenAIEmbedder.load(spec)
    raise AssertionError(f"unhandled provider {spec.provider}")


def load_generator(spec: ModelSpec, cache_dir: Path | None = None) -> "Generator":
    """Load the generative model behind ``spec`` (raises :class:`~gate.errors.ModelLoadError`)."""
    if spec.provider == "openai":
        from gate.providers import openai_compat

        return openai_compat.OpenAIGenerator.load(spec)
    if spec.provider == "transformers":
        from gate.providers import transformers_lm

        return transformers_lm.TransformersGenerator.load(spec, cache_dir=cache_dir)
    raise AssertionError(f"unhandled provider {spec.provider}")
