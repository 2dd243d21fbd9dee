"""An on-disk embedding cache, so a rebuild embeds only the items whose text is new or changed.

Entries are keyed by (model spec, sha256 of the exact text). Each model spec has its own SQLite
database under the cache directory (``indexes/.cache`` by default)::

    indexes/.cache/all-MiniLM-L6-v2-1f3c0a9e2b7d4c55.sqlite3
    indexes/.cache/hash_64-8d2a41c0e6f3b917.sqlite3

Why SQLite: a transaction is atomic and its rollback journal undoes a writer killed half-way, so
a concurrent reader (another build) never sees a half-written entry, and several builds can share
one cache. Why a checksum per entry as well: SQLite does not checksum its pages, and a flipped
bit in a vector must cost a re-embedding, never a wrong vector. Every failure of the cache
(corrupt or truncated file, full disk, a lock held too long) degrades to embedding the texts
again: the cache can make a build faster, never wrong and never failed. Deleting the directory
at any time is safe.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.embedder import Embedder, backend_of, cache_spec
from engine.errors import EmbedderError

CACHE_DIR_NAME = ".cache"
SCHEMA_VERSION = "1"
# Waiting this long for another build's transaction beats re-embedding thousands of texts.
BUSY_TIMEOUT_S = 30.0
# Keys per SELECT: far below SQLite's bound-parameter limit on any build of it.
_QUERY_CHUNK = 500
# Texts embedded between two stores: what a killed build loses at most.
STORE_EVERY = 1024
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")

log = logging.getLogger(__name__)


class _Unusable(Exception):
    """The database file exists but is not a cache of this spec in this schema."""


def text_key(text: str) -> bytes:
    """sha256 of the exact text: any change, even of whitespace, is a different entry."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _checksum(spec: str, key: bytes, blob: bytes) -> bytes:
    # The spec is inside the checksum, so an entry copied into another model's file fails it.
    digest = hashlib.blake2b(digest_size=16)
    for part in (spec.encode("utf-8", "surrogatepass"), b"\0", key, blob):
        digest.update(part)
    return digest.digest()


def _is_corrupt(exc: BaseException) -> bool:
    if isinstance(exc, _Unusable):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class EmbeddingCache:
    """Vectors by (model spec, text), in ``directory``. Safe to share between processes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path_for(self, spec: str) -> Path:
        """The database file of one model spec (readable slug + hash, so any spec is safe)."""
        slug = _SLUG.sub("_", spec).strip("._")[-40:] or "model"
        digest = hashlib.sha256(spec.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return self.directory / f"{slug}-{digest}.sqlite3"

    def _connect(self, spec: str, *, create: bool) -> sqlite3.Connection | None:
        path = self.path_for(spec)
        if not create and not path.is_file():
            return None
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        try:
            if create:
                with conn:
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                    )
                    # A rowid table, not WITHOUT ROWID: vectors (1.5 KB at 384-d) are large rows,
                    # which a rowid table appends in order; measured 3x faster to fill, half
                    # the size.
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, "
                        "vector BLOB NOT NULL, checksum BLOB NOT NULL)"
                    )
                    conn.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('spec', ?), ('schema', ?)",
                        (spec, SCHEMA_VERSION),
                    )
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("spec") != spec or meta.get("schema") != SCHEMA_VERSION:
                raise _Unusable(
                    f"{path} holds spec {meta.get('spec')!r}, schema {meta.get('schema')!r}"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def lookup(
        self, spec: str, texts: Sequence[str], dimension: int
    ) -> tuple[np.ndarray, list[int]]:
        """``(vectors, misses)``: a ``float32 (len(texts), dimension)`` array whose rows are
        filled for cache hits, and the indices of the texts the cache does not hold.

        An entry counts as a hit only if its length fits ``dimension`` and its checksum holds.
        """
        vectors = np.zeros((len(texts), dimension), dtype=np.float32)
        keys = [text_key(t) for t in texts]
        found: dict[bytes, bytes] = {}
        try:
            conn = self._connect(spec, create=False)
            if conn is not None:
                with closing(conn):
                    unique = list(dict.fromkeys(keys))
                    for start in range(0, len(unique), _QUERY_CHUNK):
                        chunk = unique[start : start + _QUERY_CHUNK]
                        rows = conn.execute(
                            "SELECT key, vector, checksum FROM vectors WHERE key IN "
                            f"({','.join('?' * len(chunk))})",
                            chunk,
                        )
                        for key, blob, checksum in rows:
                            if self._intact(spec, key, blob, checksum, dimension):
                                found[key] = blob
        except (sqlite3.Error, _Unusable) as exc:
            # Hits read before the failure passed their checksums; keep them.
            log.warning(
                "embedding cache %s unreadable (%s): embedding again", self.path_for(spec), exc
            )
        hit_rows = [row for row, key in enumerate(keys) if key in found]
        if hit_rows:
            blobs = b"".join(found[keys[row]] for row in hit_rows)
            vectors[hit_rows] = np.frombuffer(blobs, dtype="<f4").reshape(len(hit_rows), dimension)
        hit_set = set(hit_rows)
        misses = [row for row in range(len(keys)) if row not in hit_set]
        return vectors, misses

    @staticmethod
    def _intact(spec: str, key: object, blob: object, checksum: object, dimension: int) -> bool:
        # The checksum proves the bytes are those stored, and store() takes only finite vectors.
        return (
            isinstance(key, bytes)
            and isinstance(blob, bytes)
            and len(blob) == 4 * dimension
            and checksum == _checksum(spec, key, blob)
        )

    def store(self, spec: str, texts: Sequence[str], vectors: np.ndarray) -> int:
        """Remember ``vectors[i]`` as the embedding of ``texts[i]``; returns the entries written.

        Best effort: a failure is logged and the build goes on without the cache. A database
        found corrupt is replaced by a fresh one.
        """
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or len(vectors) != len(texts) or not np.isfinite(vectors).all():
            log.warning(
                "embedding cache: refusing %s vectors for %d texts", vectors.shape, len(texts)
            )
            return 0
        rows: dict[bytes, tuple[bytes, bytes, bytes]] = {}
        for text, vector in zip(texts, vectors, strict=True):
            key, blob = text_key(text), vector.tobytes()
            rows[key] = (key, blob, _checksum(spec, key, blob))
        if not rows:
            return 0
        for attempt in (1, 2):
            try:
                conn = self._connect(spec, create=True)
                assert conn is not None
                with closing(conn), conn:
                    conn.executemany(
                        "INSERT OR REPLACE INTO vectors (key, vector, checksum) VALUES (?, ?, ?)",
                        rows.values(),
                    )
                return len(rows)
            except (sqlite3.Error, _Unusable, OSError) as exc:
                if attempt == 1 and _is_corrupt(exc):
                    log.warning(
                        "embedding cache %s is corrupt (%s): starting it afresh",
                        self.path_for(spec),
                        exc,
                    )
                    self._discard(spec)
                    continue
                log.warning("embedding cache %s not updated: %s", self.directory, exc)
        return 0

    def _discard(self, spec: str) -> None:
        path = self.path_for(spec)
        # The journal first: a stale hot journal must never be replayed into the fresh database.
        for victim in (Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm"), path):
            victim.unlink(missing_ok=True)


class CachedEmbedder:
    """An :class:`~engine.embedder.Embedder` that asks ``cache`` first and embeds only misses.

    It reports the inner embedder's spec, so bundles record the real model. ``hits`` and
    ``embedded`` count texts served from the cache and texts handed to the inner embedder.
    Entries are keyed by :func:`~engine.embedder.cache_spec`: backends whose vectors are
    interchangeable (torch, onnx) share them, int8 keeps its own.
    """

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.hits = 0
        self.embedded = 0

    @property
    def spec(self) -> str:
        return self.inner.spec

    @property
    def backend(self) -> str:
        return backend_of(self.inner)

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def max_seq_length(self) -> int | None:
        return self.inner.max_seq_length

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Give it the whole catalogue at once: the misses then reach the model together, and
        the model sorts them by length into full batches. Fed a few misses per call instead,
        each tiny batch is padded to its longest text: the sample's 1 % rebuild embedded 2.4x
        slower that way."""
        spec, dimension = cache_spec(self.spec, self.backend), self.dimension
        vectors, misses = self.cache.lookup(spec, texts, dimension)
        self.hits += len(texts) - len(misses)
        # A text repeated in the catalogue is embedded once.
        todo = list(dict.fromkeys(texts[row] for row in misses))
        by_text: dict[str, np.ndarray] = {}
        with tqdm(total=len(todo), unit="text", desc="embedding", disable=not progress) as bar:
            for start in range(0, len(todo), STORE_EVERY):
                chunk = todo[start : start + STORE_EVERY]
                fresh = self.inner.embed(chunk, batch_size=batch_size)
                if fresh.shape != (len(chunk), dimension):
                    raise EmbedderError(
                        f"model {spec!r} returned vectors of shape {fresh.shape} for "
                        f"{len(chunk)} texts, expected ({len(chunk)}, {dimension})"
                    )
                # Stored chunk by chunk: a build killed half-way keeps what it embedded.
                self.cache.store(spec, chunk, fresh)
                by_text.update(zip(chunk, fresh, strict=True))
                self.embedded += len(chunk)
                bar.update(len(chunk))
        for row in misses:
            vectors[row] = by_text[texts[row]]
        return vectors
