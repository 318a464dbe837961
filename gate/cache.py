"""Persistent caches in the ``--cache`` folder: embeddings (by model fingerprint and text hash)
and generative responses (by model identity and request hash), one SQLite file each.

Why SQLite: a single file that ``actions/cache`` can save and restore, safe when two
runs share it (WAL + busy timeout), and transactional so a killed run leaves no
half-written entry. Every vector and response carries a checksum; an entry that does not match
is treated as missing and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gate.errors import BadInput

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    checksum BLOB NOT NULL,
    PRIMARY KEY (model, text_sha256)
) WITHOUT ROWID
"""
_BATCH = 500


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _checksum(model: str, key: bytes, blob: bytes) -> bytes:
    return hashlib.blake2b(model.encode() + key + blob, digest_size=16).digest()


class _Store:
    """One SQLite file in the cache folder: opened safely, set aside (never trusted) when damaged."""

    FILE = ""
    SCHEMA = ""
    WHAT = "cache"

    def __init__(self, directory: str | Path, log: Callable[[str], None] = lambda m: None):
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise BadInput("the cache must be a folder, and this is a file", directory, "--cache")
        self.path = directory / self.FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"cannot create the cache folder: {exc.strerror}", directory, "--cache") from None
        self.corrupt = 0
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            # A damaged cache is only a cache: set it aside and start a new one, never fail or trust it.
            aside = self.path.with_name(f"{self.FILE}.corrupt-{int(time.time())}")
            log(f"the {self.WHAT} {self.path} is unreadable ({exc}); moved to {aside.name}, starting afresh")
            self.path.replace(aside)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=60000")
        db.execute(self.SCHEMA)
        return db

    def close(self) -> None:
        self._db.close()


class EmbeddingCache(_Store):
    FILE = "embeddings.sqlite3"
    SCHEMA = _SCHEMA
    WHAT = "embedding cache"

    def get(self, model: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Cached vectors by position in ``texts``; corrupt entries are left out (and counted)."""
        keys = [_text_key(t) for t in texts]
        where: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            where.setdefault(k, []).append(i)
        found: dict[int, np.ndarray] = {}
        unique = list(where)
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start:start + _BATCH]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT text_sha256, dim, vector, checksum FROM embeddings WHERE model = ? AND text_sha256 IN ({marks})",
                [model, *chunk],
            )
            for key, dim, blob, check in rows:
                if len(blob) != dim * 4 or _checksum(model, key, blob) != check:
                    self.corrupt += 1
                    continue
                vec = np.frombuffer(blob, dtype="<f4")
                for i in where[key]:
                    found[i] = vec
        return found

    def put(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = []
        for text, vec in zip(texts, np.asarray(vectors, dtype="<f4")):
            key, blob = _text_key(text), vec.tobytes()
            rows.append((model, key, int(vec.shape[0]), blob, _checksum(model, key, blob)))
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows)


class ResponseCache(_Store):
    """Generative responses by request key: a second run of the same suite sends no request.

    The key (see :meth:`gate.llm.ChatRequest.key`) hashes the model identity (weights
    fingerprint, or model id + base URL) with every request parameter, the repeat
    index included, so each sample of a nondeterministic model is its own entry.
    """

    FILE = "responses.sqlite3"
    SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    checksum BLOB NOT NULL
) WITHOUT ROWID
"""
    WHAT = "response cache"

    @staticmethod
    def key(kind: str, identity: str, text: str) -> str:
        """A key for requests that are not chat completions (e.g. prompt log-probabilities)."""
        from gate.llm import CACHE_FORMAT

        payload = json.dumps([CACHE_FORMAT, kind, identity, text], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value, checksum FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value, check = row
        if _checksum("response", key.encode(), value.encode("utf-8")) != check:
            self.corrupt += 1
            return None
        try:
            return json.loads(value)
        except ValueError:
            self.corrupt += 1
            return None

    def put(self, key: str, value: dict) -> None:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        check = _checksum("response", key.encode(), text.encode("utf-8"))
        self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, text, check))
