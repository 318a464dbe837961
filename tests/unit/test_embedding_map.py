"""gate.embedding_map: side-by-side t-SNE maps of two models' embeddings, written as a reproducible PNG."""

from __future__ import annotations

import struct
import zlib
from collections import Counter

import numpy as np
import pytest

from gate.embedding_map import DPI, PANEL_INCHES, _align, sample_indices, write_map

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def blobs(n_per: int = 10, n_labels: int = 6, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_labels, dim)) * 3
    codes = np.repeat(np.arange(n_labels), n_per)
    x = centres[codes] + rng.normal(size=(len(codes), dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [f"intent_{c}" for c in codes]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == PNG_MAGIC
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


@pytest.fixture(scope="module")
def two_models():
    base, labels = blobs()
    # the candidate: a somewhat different geometry (features permuted, noise added)
    rng = np.random.default_rng(1)
    cand = base[:, rng.permutation(base.shape[1])] + 0.05 * rng.normal(size=base.shape).astype(np.float32)
    return {"baseline": base, "candidate": cand}, labels


@pytest.fixture(scope="module")
def written(tmp_path_factory, two_models):
    embeddings, labels = two_models
    folder = tmp_path_factory.mktemp("maps")
    first = write_map(folder / "maps" / "a.png", embeddings, labels, seed=0, title="intents")
    second = write_map(folder / "b.png", embeddings, labels, seed=0, title="intents")
    return first, second


def test_the_png_is_valid_with_two_panels(written, two_models):
    result, _ = written
    data = result.path.read_bytes()
    chunks = png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == (int(2 * PANEL_INCHES * DPI), int((PANEL_INCHES + 0.6) * DPI))
    assert result.panels == ("baseline (60 points)", "candidate (60 points)")
    assert set(result.coords) == {"baseline", "candidate"}
    assert all(c.shape == (60, 2) and np.isfinite(c).all() for c in result.coords.values())
    assert result.indices.tolist() == list(range(60))
    # no software/version text: the bytes depend on the inputs only
    assert all(kind != b"tEXt" or not body.startswith(b"Software") for kind, body in chunks)


def test_the_same_inputs_give_the_same_bytes(written):
    first, second = written
    assert first.path.read_bytes() == second.path.read_bytes()
    assert all(np.array_equal(first.coords[r], second.coords[r]) for r in first.coords)


def test_the_candidate_map_is_turned_onto_the_baseline(tmp_path):
    # t-SNE's axes are arbitrary: a turned or mirrored copy of the baseline's map is laid back onto it
    xy = np.random.default_rng(0).normal(size=(40, 2)) * [3.0, 1.0]
    angle = 0.7
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([1.0, -1.0])
    assert np.allclose(_align(xy @ turn + 5.0, xy), xy, atol=1e-9)
    # identical embeddings give identical panels
    x, labels = blobs(n_per=5, n_labels=3)
    result = write_map(tmp_path / "same.png", {"baseline": x, "candidate": x.copy()}, labels, seed=0)
    assert np.allclose(result.coords["baseline"], result.coords["candidate"], atol=1e-6)


def test_a_large_input_is_sampled_to_max_points(tmp_path):
    x, labels = blobs(n_per=40, n_labels=3)
    result = write_map(tmp_path / "m.png", {"baseline": x, "candidate": x[:, ::-1].copy()}, labels, seed=0,
                       max_points=30)
    assert len(result.indices) == 30 and result.panels[0] == "baseline (30 points)"
    assert Counter(labels[i] for i in result.indices) == {"intent_0": 10, "intent_1": 10, "intent_2": 10}
    assert result.path.read_bytes()[:8] == PNG_MAGIC


def test_sample_indices():
    labels = ["a"] * 50 + ["b"] * 5 + ["c"] * 20
    idx = sample_indices(labels, 30, seed=0)
    assert len(idx) == 30 and list(idx) == sorted(set(idx.tolist()))
    counts = Counter(labels[i] for i in idx)
    assert counts == {"b": 5, "a": 13, "c": 12}  # each label in turn: b runs out after 5 rounds
    assert np.array_equal(idx, sample_indices(labels, 30, seed=0))
    assert not np.array_equal(idx, sample_indices(labels, 30, seed=1))
    assert sample_indices(labels, 100, seed=0).tolist() == list(range(75))


def test_bad_arguments(tmp_path):
    x, labels = blobs(n_per=2, n_labels=2)
    with pytest.raises(ValueError, match="candidate: 3 embeddings for 4 labels"):
        write_map(tmp_path / "m.png", {"baseline": x, "candidate": x[:3]}, labels)
    with pytest.raises(ValueError, match="at least 3 points"):
        write_map(tmp_path / "m.png", {"baseline": x[:2]}, labels[:2])
    with pytest.raises(ValueError, match="no embeddings"):
        write_map(tmp_path / "m.png", {}, labels)
    assert not (tmp_path / "m.png").exists()


def test_many_labels_and_one_role(tmp_path):
    x, labels = blobs(n_per=2, n_labels=30, dim=16)
    result = write_map(tmp_path / "one.png", {"only": x}, labels, seed=2)
    width, height = struct.unpack(">II", png_chunks(result.path.read_bytes())[0][1][:8])
    assert (width, height) == (int(PANEL_INCHES * DPI), int((PANEL_INCHES + 0.2) * DPI))
    assert result.panels == ("only (60 points)",)


@pytest.mark.parametrize("collapsed", [
    np.zeros((50, 8)),                                  # every vector zero
    np.tile(np.eye(1, 8), (50, 1)),                     # every vector the same
    np.repeat(np.eye(2, 8), 25, axis=0),                # two points only
])
def test_a_collapsed_space_is_refused_not_crashed(tmp_path, collapsed):
    """scikit-learn's t-SNE segfaults on points without spread; the map must refuse them with an error."""
    labels = ["a", "b"] * 25
    healthy = np.random.default_rng(0).normal(size=(50, 8))
    with pytest.raises(ValueError, match="the candidate's embeddings of the sample have fewer than 3 distinct"):
        write_map(tmp_path / "m.png", {"baseline": healthy, "candidate": collapsed}, labels)
    assert not (tmp_path / "m.png").exists()
