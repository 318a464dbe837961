"""Persistent caches in the ``--cache`` folder: embeddings (by model fingerprint and text hash)
and generative responses (by model identity and request hash), one SQLite file each.

Why SQLite: a single file that ``actions/cache`` can save and restore, safe when two
runs share it (WAL + busy timeout), and transactional so a killed run leaves no
half-written entry. Every vector and response carries a checksum; an entry that does not match
is treated as missing and recomputed, never used.

Layout of the embedding file: a rowid table (a vector is stored in its row) with a unique index on
(model, text hash), in 16 KiB pages. A clustered ``WITHOUT ROWID`` table in 4 KiB pages, as files
written before kept, spills every 384-d vector (1.5 KB) into an overflow page: ~4.7 KB on disk per
vector instead of ~2 KB, and 3x slower writes. Both layouts answer the same queries; an older file
keeps working as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gate.errors import BadInput

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    checksum BLOB NOT NULL,
    UNIQUE (model, text_sha256)
)
"""
_BATCH = 500
#: vectors written per transaction: a big corpus is stored in steps, so the WAL file stays small
_PUT_BATCH = 20_000


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _checksum(model: str, key: bytes, blob: bytes) -> bytes:
    return hashlib.blake2b(model.encode() + key + blob, digest_size=16).digest()


class _Store:
    """One SQLite file in the cache folder: opened safely, set aside (never trusted) when damaged."""

    FILE = ""
    SCHEMA = ""
    WHAT = "cache"
    PAGE_SIZE: int | None = None  # applies to a new file only

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
        #: set when the file failed during the run: the rest of the run neither reads nor writes it
        self.broken = False
        self._log = log
        self._inode: int | None = None
        try:
            self._db = self._open()
        except sqlite3.OperationalError as exc:  # locked, read-only, no permission: the file may well be fine
            log(f"the {self.WHAT} {self.path} cannot be used ({exc}); this run goes on without it")
            self.broken = True
            self._db = sqlite3.connect(":memory:")
        except sqlite3.DatabaseError as exc:
            # A damaged cache is only a cache: set it aside and start a new one, never fail or trust it.
            log(f"the {self.WHAT} {self.path} is unreadable ({exc}); {self._set_aside()}, starting afresh")
            self._db = self._open()
        try:
            self._inode = os.stat(self.path).st_ino
        except OSError:
            pass

    def _set_aside(self) -> str:
        """Move the damaged file out of the way (what happened, for the log). Another run may have moved it
        already, or put a new file in its place: a file other than the one this run opened is left alone."""
        try:
            if self._inode is not None and os.stat(self.path).st_ino != self._inode:
                return "another run has replaced it since, so it was left as it is"
            aside = self.path.with_name(f"{self.FILE}.corrupt-{time.time_ns()}-{os.getpid()}")
            self.path.replace(aside)
        except OSError as exc:
            return f"it could not be moved aside ({exc.strerror or exc})"
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        return f"moved to {aside.name}"

    def _guarded(self, default: Any, action: Callable[[], Any]) -> Any:
        """``action()``, or ``default`` once the file has failed (now or earlier in the run): every read
        and write goes through here, so a cache can slow a run down but never stop it."""
        if self.broken:
            return default
        try:
            return action()
        except sqlite3.DatabaseError as exc:
            self._failed(exc)
            return default

    def _failed(self, exc: sqlite3.DatabaseError) -> None:
        """A failure found while reading or writing (a page damaged after it opened, a lock held past
        the timeout): the run goes on without the cache, and a damaged file is set aside for the next."""
        self.broken = True
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        if isinstance(exc, sqlite3.OperationalError):  # busy or locked: the file itself may be fine
            self._log(f"the {self.WHAT} {self.path} failed ({exc}); this run goes on without it")
            return
        self._log(f"the {self.WHAT} {self.path} is damaged ({exc}); this run goes on without it; "
                  f"{self._set_aside()}")

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        if self.PAGE_SIZE:
            db.execute(f"PRAGMA page_size={self.PAGE_SIZE}")  # ignored by an existing file (and in WAL mode)
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
    PAGE_SIZE = 16384

    def _rows(self, model: str, texts: Sequence[str]):
        """``(positions in texts, dim, vector blob)`` of each valid cached entry; corrupt ones are counted.

        Texts are looked up :data:`_BATCH` at a time, so a million-text corpus never needs a dictionary
        of every key (a text repeated in two batches is looked up twice)."""
        for start in range(0, len(texts), _BATCH):
            where: dict[bytes, list[int]] = {}
            for i in range(start, min(start + _BATCH, len(texts))):
                where.setdefault(_text_key(texts[i]), []).append(i)
            chunk = list(where)
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT text_sha256, dim, vector, checksum FROM embeddings WHERE model = ? AND text_sha256 IN ({marks})",
                [model, *chunk],
            )
            for key, dim, blob, check in rows:
                if len(blob) != dim * 4 or _checksum(model, key, blob) != check:
                    self.corrupt += 1
                    continue
                yield where[key], dim, blob

    def lookup(self, model: str, texts: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Cached vectors written straight into one ``(len(texts), dim)`` float32 matrix (None when none
        is cached) and a mask of the rows found; no per-vector objects, so a big corpus costs one matrix.

        Entries of one model that disagree on the dimension cannot all be right and none can be told
        wrong: then nothing is used (every text is recomputed) and the odd ones are counted as corrupt."""
        return self._guarded((None, np.zeros(len(texts), dtype=bool)), lambda: self._lookup(model, texts))

    def _lookup(self, model: str, texts: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        found = np.zeros(len(texts), dtype=bool)
        matrix: np.ndarray | None = None
        mixed = False
        for positions, dim, blob in self._rows(model, texts):
            if matrix is None:
                matrix = np.empty((len(texts), dim), dtype=np.float32)
            elif dim != matrix.shape[1]:
                self.corrupt += 1
                mixed = True
                continue
            vec = np.frombuffer(blob, dtype="<f4")
            for i in positions:
                matrix[i] = vec
                found[i] = True
        if mixed:
            return None, np.zeros(len(texts), dtype=bool)
        return matrix, found

    def put(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors, :data:`_PUT_BATCH` per transaction (each entry is whole or absent)."""
        vectors = np.asarray(vectors, dtype="<f4")

        def rows(start: int, stop: int):
            for text, vec in zip(texts[start:stop], vectors[start:stop]):
                key, blob = _text_key(text), vec.tobytes()
                yield model, key, int(vec.shape[0]), blob, _checksum(model, key, blob)

        def write(start: int) -> None:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO embeddings (model, text_sha256, dim, vector, checksum) "
                                     "VALUES (?, ?, ?, ?, ?)", rows(start, start + _PUT_BATCH))

        for start in range(0, len(texts), _PUT_BATCH):
            self._guarded(None, lambda: write(start))


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
        row = self._guarded(None, lambda: self._db.execute(
            "SELECT value, checksum FROM responses WHERE key = ?", (key,)).fetchone())
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
        self._guarded(None, lambda: self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                                                     (key, text, check)))
