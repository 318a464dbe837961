"""Model providers behind one small protocol.

A provider turns a :class:`~gate.suite.ModelSpec` into an :class:`Embedder`. The
runner only ever sees the protocol, so tests inject encoders with known outputs
and later providers (OpenAI-compatible endpoints) slot in without touching tasks.
Heavy imports (torch) happen inside ``load`` so ``gate --help`` stays fast.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from gate.suite import ModelSpec


class Embedder(Protocol):
    """A loaded embedding model."""

    spec: str

    def fingerprint(self) -> str:
        """A stable identity of the weights and config (``sha256:...``)."""

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Float32 matrix ``(len(texts), dim)``; need not be normalized (the runner does it once)."""


Loader = Callable[[ModelSpec], Embedder]


def check_model(spec: ModelSpec) -> None:
    """Cheap checks before anything is loaded: a bad reference is bad input (exit 2)."""
    if spec.provider == "sentence-transformers":
        from gate.providers import sentence_transformers as st

        st.check(spec)
        return
    raise AssertionError(f"unhandled provider {spec.provider}")  # the schema lists every provider


def load_embedder(spec: ModelSpec) -> Embedder:
    """Load the model behind ``spec`` (raises :class:`~gate.errors.ModelLoadError`)."""
    if spec.provider == "sentence-transformers":
        from gate.providers import sentence_transformers as st

        return st.SentenceTransformerEmbedder.load(spec)
    raise AssertionError(f"unhandled provider {spec.provider}")
