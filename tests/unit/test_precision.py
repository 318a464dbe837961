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
