"""The embedding cache file: round trip into one matrix, checksums, batches, and files of the older layout."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import gate.cache
from gate.cache import EmbeddingCache, _checksum, _text_key


def vectors(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_lookup_writes_cached_rows_into_one_matrix(tmp_path):
    cache = EmbeddingCache(tmp_path)
    stored = vectors(3)
    cache.put("m", ["a", "b", "c"], stored)
    matrix, found = cache.lookup("m", ["c", "x", "a", "c"])
    assert found.tolist() == [True, False, True, True]
    assert matrix.shape == (4, 4) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[[0, 2, 3]], stored[[2, 0, 2]])  # a repeated text fills every place
    assert cache.corrupt == 0


def test_lookup_of_nothing_cached_allocates_nothing(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a"], vectors(1))
    matrix, found = cache.lookup("other model", ["a", "b"])
    assert matrix is None and not found.any()
    matrix, found = cache.lookup("m", [])
    assert matrix is None and found.shape == (0,)


def test_put_in_several_transactions_stores_every_vector(tmp_path, monkeypatch):
    monkeypatch.setattr(gate.cache, "_PUT_BATCH", 3)
    cache = EmbeddingCache(tmp_path)
    texts = [f"text {i}" for i in range(10)]
    stored = vectors(10)
    cache.put("m", texts, stored)
    matrix, found = cache.lookup("m", texts)
    assert found.all()
    np.testing.assert_array_equal(matrix, stored)


def tamper(tmp_path, sql: str, *args) -> None:
    db = sqlite3.connect(tmp_path / EmbeddingCache.FILE)
    db.execute(sql, args)
    db.commit()
    db.close()


def test_a_damaged_entry_is_never_used(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a", "b"], vectors(2))
    cache.close()
    tamper(tmp_path, "UPDATE embeddings SET vector = zeroblob(length(vector)) WHERE text_sha256 = ?", _text_key("a"))
    tamper(tmp_path, "UPDATE embeddings SET dim = 3 WHERE text_sha256 = ?", _text_key("b"))  # length != dim * 4
    cache = EmbeddingCache(tmp_path)
    matrix, found = cache.lookup("m", ["a", "b"])
    assert matrix is None and not found.any()
    assert cache.corrupt == 2


def test_entries_that_disagree_on_the_dimension_are_all_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a", "b"], vectors(2))
    cache.close()
    blob = vectors(1, dim=6)[0].tobytes()  # a well-formed entry with a valid checksum, of another size
    tamper(tmp_path, "INSERT INTO embeddings (model, text_sha256, dim, vector, checksum) VALUES (?, ?, ?, ?, ?)",
           "m", _text_key("c"), 6, blob, _checksum("m", _text_key("c"), blob))
    cache = EmbeddingCache(tmp_path)
    matrix, found = cache.lookup("m", ["a", "b", "c"])
    assert matrix is None and not found.any()
    assert cache.corrupt >= 1
    matrix, found = cache.lookup("m", ["a", "b"])  # without the odd one the rest is consistent and used
    assert found.all()


def test_a_new_file_uses_the_compact_layout(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a"], vectors(1))
    (page_size,) = cache._db.execute("PRAGMA page_size").fetchone()
    (sql,) = cache._db.execute("SELECT sql FROM sqlite_master WHERE name = 'embeddings'").fetchone()
    assert page_size == 16384 and "WITHOUT ROWID" not in sql


def test_a_file_of_the_older_layout_keeps_working(tmp_path):
    """Caches restored by actions/cache from an older gate have a WITHOUT ROWID table in 4 KiB pages."""
    db = sqlite3.connect(tmp_path / EmbeddingCache.FILE)
    db.execute("""CREATE TABLE embeddings (model TEXT NOT NULL, text_sha256 BLOB NOT NULL, dim INTEGER NOT NULL,
                  vector BLOB NOT NULL, checksum BLOB NOT NULL, PRIMARY KEY (model, text_sha256)) WITHOUT ROWID""")
    old = vectors(1, seed=1)[0]
    db.execute("INSERT INTO embeddings VALUES (?, ?, ?, ?, ?)",
               ("m", _text_key("old"), 4, old.tobytes(), _checksum("m", _text_key("old"), old.tobytes())))
    db.commit()
    db.close()
    cache = EmbeddingCache(tmp_path)
    new = vectors(1, seed=2)
    cache.put("m", ["new"], new)
    matrix, found = cache.lookup("m", ["old", "new"])
    assert found.all()
    np.testing.assert_array_equal(matrix, np.stack([old, new[0]]))
    (sql,) = cache._db.execute("SELECT sql FROM sqlite_master WHERE name = 'embeddings'").fetchone()
    assert "WITHOUT ROWID" in sql  # left as it was


@pytest.mark.parametrize("replace", [False, True])
def test_writing_a_text_again_keeps_one_entry(tmp_path, replace):
    cache = EmbeddingCache(tmp_path)
    first, second = vectors(1, seed=1), vectors(1, seed=2)
    cache.put("m", ["a"], first)
    cache.put("m", ["a"], second if replace else first)
    (count,) = cache._db.execute("SELECT count(*) FROM embeddings").fetchone()
    matrix, _ = cache.lookup("m", ["a"])
    assert count == 1
    np.testing.assert_array_equal(matrix[0], (second if replace else first)[0])


def test_a_file_damaged_after_it_opened_is_left_for_the_rest_of_the_run(tmp_path):
    """A damaged page found by a query (not at open) must not crash the run: no cache, a message, the file set aside."""
    cache = EmbeddingCache(tmp_path)
    texts = [f"text {i}" for i in range(300)]
    cache.put("m", texts, vectors(300, dim=384))
    cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    path = tmp_path / EmbeddingCache.FILE
    with open(path, "r+b") as fh:  # overwrite the b-tree pages past the header (page 1)
        fh.seek(16384 * 2)
        fh.write(b"\xff" * 16384 * 4)
    messages: list[str] = []
    cache = EmbeddingCache(tmp_path, log=messages.append)
    matrix, found = cache.lookup("m", texts)
    assert matrix is None and not found.any()
    assert cache.broken and "is damaged" in messages[-1] and "this run goes on without it" in messages[-1]
    assert list(tmp_path.glob("embeddings.sqlite3.corrupt-*")) and not path.exists()
    cache.put("m", texts[:1], vectors(1, dim=384))  # a no-op now, not an error
    assert cache.lookup("m", texts[:1])[0] is None


def test_a_cache_locked_past_the_timeout_is_skipped_not_set_aside(tmp_path):
    cache = EmbeddingCache(tmp_path)
    messages: list[str] = []
    cache._log = messages.append
    cache._failed(sqlite3.OperationalError("database is locked"))
    assert cache.broken and "failed (database is locked)" in messages[0]
    assert (tmp_path / EmbeddingCache.FILE).exists()


@pytest.mark.parametrize("race", ["moved", "replaced"])
def test_a_damaged_file_another_run_already_handled_is_left_alone(tmp_path, race):
    """Two runs share the cache: the other may have set the damaged file aside, or started a new one."""
    cache = EmbeddingCache(tmp_path)
    cache.put("m", ["a"], vectors(1))
    path = tmp_path / EmbeddingCache.FILE
    path.rename(tmp_path / "elsewhere")
    if race == "replaced":
        EmbeddingCache(tmp_path / "other").close()
        (tmp_path / "other" / EmbeddingCache.FILE).rename(path)  # a healthy new file, another inode
    messages: list[str] = []
    cache._log = messages.append
    cache._failed(sqlite3.DatabaseError("database disk image is malformed"))
    assert cache.broken and "this run goes on without it" in messages[0]
    assert ("left as it is" if race == "replaced" else "could not be moved aside") in messages[0]
    assert path.exists() == (race == "replaced")  # a new file is never moved
    assert not list(tmp_path.glob("embeddings.sqlite3.corrupt-*"))


def test_a_cache_that_cannot_be_opened_for_a_lock_is_skipped_and_kept(tmp_path, monkeypatch):
    EmbeddingCache(tmp_path).close()
    monkeypatch.setattr(EmbeddingCache, "_open", lambda self: (_ for _ in ()).throw(
        sqlite3.OperationalError("database is locked")))
    messages: list[str] = []
    cache = EmbeddingCache(tmp_path, log=messages.append)
    assert cache.broken and "cannot be used (database is locked)" in messages[0]
    cache.put("m", ["a"], vectors(1))
    assert cache.lookup("m", ["a"])[0] is None
    cache.close()
    assert (tmp_path / EmbeddingCache.FILE).exists() and not list(tmp_path.glob("*.corrupt-*"))
