"""Encode precision of the sentence-transformers provider: float16 on CUDA by default, float32 elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

from gate.errors import ModelLoadError
from gate.providers.sentence_transformers import SentenceTransformerEmbedder, half_precision
from gate.suite import ModelSpec


@pytest.mark.parametrize("dtype, device, half", [
    ("auto", "cuda", True), ("auto", "cpu", False), ("float16", "cpu", True), ("float32", "cuda", False),
])
def test_half_precision_rule(dtype, device, half):
    assert half_precision(dtype, device) is half


def test_unknown_dtype_is_refused():
    with pytest.raises(ModelLoadError, match="expected auto, float16 or float32"):
        half_precision("bfloat8", "cuda")


@pytest.mark.model
def test_float16_encodes_the_same_directions_as_float32():
    texts = ["A man is playing a guitar.", "Heat transfer in a hypersonic boundary layer.", "Where is my card?"]
    fp32 = SentenceTransformerEmbedder.load(ModelSpec("sentence-transformers", "default", (("device", "cpu"),)))
    fp16 = SentenceTransformerEmbedder.load(ModelSpec("sentence-transformers", "default",
                                                      (("device", "cpu"), ("dtype", "float16"))))
    assert next(fp16.model.parameters()).dtype.__str__() == "torch.float16"
    a, b = fp32.encode(texts), fp16.encode(texts)
    assert b.dtype == np.float32 and a.shape == b.shape
    cos = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.all(cos > 0.999) and not np.array_equal(a, b)


@pytest.mark.parametrize("options, variant", [
    ((), None),                                    # auto on this CPU-only torch
    ((("device", "cpu"),), None),
    ((("device", "cuda:0"),), "float16"),          # auto on a GPU: decided without loading anything
    ((("device", "cuda"), ("dtype", "float32")), None),
    ((("dtype", "float16"),), "float16"),
])
def test_the_cache_variant_says_float16_before_the_model_loads(options, variant):
    embedder = SentenceTransformerEmbedder.load(ModelSpec("sentence-transformers", "default", options))
    assert embedder.cache_variant() == variant
    assert embedder._model is None


@pytest.mark.model
def test_a_big_encode_in_pieces_gives_the_vectors_of_one_call(monkeypatch):
    """Past ENCODE_CHUNK texts, pieces of similar length are written back into the callers' order."""
    import gate.providers.sentence_transformers as st

    texts = [("heat transfer in a boundary layer " * (i % 7)) + f"case {i}" for i in range(23)]
    embedder = SentenceTransformerEmbedder.load(ModelSpec("sentence-transformers", "default", (("device", "cpu"),)))
    whole = embedder.encode(texts)
    monkeypatch.setattr(st, "ENCODE_CHUNK", 5)
    pieces = embedder.encode(texts)
    assert pieces.shape == whole.shape == (23, 384)
    np.testing.assert_allclose(pieces, whole, atol=2e-6)
    assert np.all(np.sum(pieces * whole, axis=1) > 0.99999)


@pytest.mark.parametrize("device, ok", [("cpu", True), ("cuda", True), ("cuda:1", True), ("mps", True),
                                        ("bogus", False), ("cuda:x", False), ("", False), (3, False)])
def test_the_device_is_checked_before_anything_loads(device, ok):
    """A run whose vectors are all cached never loads the model, so a typo in ``device`` must fail up front."""
    from gate.errors import BadInput
    from gate.providers import check_model

    spec = ModelSpec("sentence-transformers", "default", (("device", device),))
    if ok:
        check_model(spec)
    else:
        with pytest.raises(BadInput, match="expected cpu, cuda, cuda:N"):
            check_model(spec)
