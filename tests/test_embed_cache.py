"""The embedding cache: rebuilds embed only new or changed texts, and a damaged cache costs a
re-embedding, never a wrong vector."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import Bundle, HashEmbedder
from engine.embed_cache import CachedEmbedder, EmbeddingCache, text_key
from indexer.build import BuildConfig, build
from indexer.sample import SAMPLE_DIR
from tests.conftest import ROOT, movies_slice, sample_build

N_MOVIES = 200


class CountingEmbedder:
    """A HashEmbedder that counts the texts it is asked to embed (optionally under another spec)."""

    def __init__(self, dimension: int = 64, spec: str | None = None) -> None:
        self.inner = HashEmbedder(dimension)
        self._spec = spec or self.inner.spec
        self.count = 0
        self.calls = 0

    @property
    def spec(self) -> str:
        return self._spec

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def max_seq_length(self) -> int | None:
        return None

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        self.count += len(texts)
        self.calls += 1
        return self.inner.embed(texts)


@pytest.fixture()
def catalog(tmp_path: Path) -> Path:
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    return movies_slice(tmp_path, movies["movieId"][:N_MOVIES].tolist())


def config_for(indexes: Path, catalog: Path, **changes: object) -> BuildConfig:
    return dataclasses.replace(sample_build(indexes, catalog, "m", popularity=False), **changes)


def built_vectors(config: BuildConfig, embedder: object) -> np.ndarray:
    report = build(config, embedder)  # type: ignore[arg-type]
    return np.asarray(Bundle.load(report.path).vectors)


def uncached_vectors(tmp_path: Path, catalog: Path) -> np.ndarray:
    """The reference: the same catalogue built with the cache off."""
    config = config_for(tmp_path / "reference", catalog, cache=False)
    return built_vectors(config, HashEmbedder(64))


def change_titles(catalog: Path, rows: Sequence[int]) -> None:
    movies = pd.read_csv(catalog, dtype={"movieId": str})
    for row in rows:
        movies.loc[row, "title"] = f"{movies.loc[row, 'title']} (Director's Cut)"
    movies.to_csv(catalog, index=False)


def cache_file(indexes: Path, spec: str = "hash:64") -> Path:
    return EmbeddingCache(indexes / ".cache").path_for(spec)


def test_second_build_embeds_nothing_and_changed_items_only(tmp_path: Path, catalog: Path) -> None:
    config = config_for(tmp_path / "idx", catalog)
    counter = CountingEmbedder()
    first = build(config, counter)  # type: ignore[arg-type]
    assert counter.count == N_MOVIES
    assert (first.embedded, first.cached) == (N_MOVIES, 0)
    assert cache_file(tmp_path / "idx").is_file()

    counter.count = 0
    second = build(config, counter)  # type: ignore[arg-type]
    assert counter.count == 0
    assert (second.embedded, second.cached) == (0, N_MOVIES)
    assert np.array_equal(Bundle.load(second.path).vectors, Bundle.load(first.path).vectors)

    change_titles(catalog, [3, 50, 199])
    third = build(config, counter)  # type: ignore[arg-type]
    assert counter.count == 3
    assert (third.embedded, third.cached) == (3, N_MOVIES - 3)
    assert np.array_equal(Bundle.load(third.path).vectors, uncached_vectors(tmp_path, catalog))


def test_no_cache_and_cache_dir(tmp_path: Path, catalog: Path) -> None:
    counter = CountingEmbedder()
    build(config_for(tmp_path / "idx", catalog, cache=False), counter)  # type: ignore[arg-type]
    build(config_for(tmp_path / "idx", catalog, cache=False), counter)  # type: ignore[arg-type]
    assert counter.count == 2 * N_MOVIES
    assert not (tmp_path / "idx" / ".cache").exists()

    elsewhere = tmp_path / "shared-cache"
    config = config_for(tmp_path / "idx", catalog, cache_dir=elsewhere)
    build(config, counter)  # type: ignore[arg-type]
    build(config_for(tmp_path / "other", catalog, cache_dir=elsewhere), counter)  # type: ignore[arg-type]
    assert counter.count == 3 * N_MOVIES  # the second index reused the first one's vectors
    assert EmbeddingCache(elsewhere).path_for("hash:64").is_file()
    assert not (tmp_path / "idx" / ".cache").exists()


def test_different_specs_never_share_entries(tmp_path: Path, catalog: Path) -> None:
    config = config_for(tmp_path / "idx", catalog)
    build(config, CountingEmbedder())  # type: ignore[arg-type]
    # Same dimension, another spec: nothing may come from hash:64's entries.
    other = CountingEmbedder(spec="other-model")
    build(config, other)  # type: ignore[arg-type]
    assert other.count == N_MOVIES
    smaller = CountingEmbedder(32)
    build(config, smaller)  # type: ignore[arg-type]
    assert smaller.count == N_MOVIES
    files = {cache_file(tmp_path / "idx", s) for s in ("hash:64", "other-model", "hash:32")}
    assert len(files) == 3 and all(f.is_file() for f in files)

    # Even a database file copied under another spec's name yields no hits...
    cache = EmbeddingCache(tmp_path / "idx" / ".cache")
    texts = ["a text", "another text"]
    cache.store("hash:64", texts, HashEmbedder(64).embed(texts))
    cache_file(tmp_path / "idx", "other-model").write_bytes(
        cache_file(tmp_path / "idx", "hash:64").read_bytes()
    )
    _, misses = cache.lookup("other-model", texts, 64)
    assert misses == [0, 1]
    # ... and so does an entry moved into another spec's database.
    with sqlite3.connect(cache_file(tmp_path / "idx", "hash:64")) as src:
        row = src.execute("SELECT key, vector, checksum FROM vectors").fetchone()
    cache.store("spec-b", ["unrelated"], HashEmbedder(64).embed(["unrelated"]))
    with sqlite3.connect(cache_file(tmp_path / "idx", "spec-b")) as dst:
        dst.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", row)
    _, misses = cache.lookup("spec-b", texts, 64)
    assert misses == [0, 1]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip-vector-byte"])
def test_damaged_cache_re_embeds_and_stays_correct(
    tmp_path: Path, catalog: Path, damage: str
) -> None:
    config = config_for(tmp_path / "idx", catalog)
    build(config, CountingEmbedder())  # type: ignore[arg-type]
    path = cache_file(tmp_path / "idx")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data[:100] = b"\x42" * 100
    else:
        one = HashEmbedder(64).embed([Bundle.load(tmp_path / "idx" / "m").items["text"][7]])
        at = bytes(data).find(one.tobytes())
        assert at > 0
        data[at + 5] ^= 0x01
    path.write_bytes(bytes(data))

    counter = CountingEmbedder()
    vectors = built_vectors(config, counter)
    assert counter.count >= 1
    if damage == "flip-vector-byte":
        assert counter.count == 1  # only the damaged entry
    assert np.array_equal(vectors, uncached_vectors(tmp_path, catalog))
    # The cache healed: the next build is served from it entirely.
    counter.count = 0
    assert np.array_equal(built_vectors(config, counter), vectors)
    assert counter.count == 0


def test_entry_of_wrong_length_is_a_miss(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    texts = ["alpha", "beta", "gamma"]
    vectors = HashEmbedder(64).embed(texts)
    assert cache.store("hash:64", texts, vectors) == 3
    found, misses = cache.lookup("hash:64", texts, 64)
    assert misses == [] and np.array_equal(found, vectors)
    found, misses = cache.lookup("hash:64", texts, 32)  # a dimension the entries do not have
    assert misses == [0, 1, 2] and not found.any()
    with sqlite3.connect(cache.path_for("hash:64")) as conn:
        conn.execute(
            "UPDATE vectors SET vector = substr(vector, 1, 100) WHERE key = ?", (text_key("beta"),)
        )
    found, misses = cache.lookup("hash:64", texts, 64)
    assert misses == [1]
    assert np.array_equal(found[[0, 2]], vectors[[0, 2]])


def test_repeated_texts_are_embedded_once(tmp_path: Path) -> None:
    counter = CountingEmbedder()
    cached = CachedEmbedder(counter, EmbeddingCache(tmp_path))  # type: ignore[arg-type]
    texts = ["same", "other", "same", "same"]
    vectors = cached.embed(texts)
    assert counter.count == 2 and cached.embedded == 2 and cached.hits == 0
    assert np.array_equal(vectors, HashEmbedder(64).embed(texts))
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert np.array_equal(cached.embed(texts[::-1]), vectors[::-1])
    assert counter.count == 2 and cached.hits == 4


def test_scattered_misses_reach_the_model_in_one_call(tmp_path: Path) -> None:
    texts = [f"item number {i}" for i in range(5000)]
    counter = CountingEmbedder()
    cached = CachedEmbedder(counter, EmbeddingCache(tmp_path))  # type: ignore[arg-type]
    cached.embed(texts)
    assert counter.calls == 5  # a cold cache: stored every STORE_EVERY texts
    for row in (10, 2500, 4999):
        texts[row] += " (changed)"
    counter.calls = counter.count = 0
    assert np.array_equal(cached.embed(texts), HashEmbedder(64).embed(texts))
    # Full batches for the model, not a few texts per chunk of the catalogue.
    assert (counter.calls, counter.count) == (1, 3)


KILLED_WRITER = """
import os, signal, sqlite3, sys
from engine import HashEmbedder
from engine.embed_cache import EmbeddingCache, _checksum, text_key
cache = EmbeddingCache(sys.argv[1])
cache.store("hash:64", ["kept"], HashEmbedder(64).embed(["kept"]))
conn = sqlite3.connect(cache.path_for("hash:64"))
texts = [f"text {i}" for i in range(2000)]
conn.execute("BEGIN")
for text, vector in zip(texts, HashEmbedder(64).embed(texts)):
    key, blob = text_key(text), vector.tobytes()
    conn.execute("INSERT INTO vectors VALUES (?, ?, ?)", (key, blob, _checksum("hash:64", key, blob)))
os.kill(os.getpid(), signal.SIGKILL)  # before COMMIT: a hot journal is left behind
"""


def test_writer_killed_mid_transaction_leaves_no_entry(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=ROOT, check=False
    )
    assert result.returncode == -9
    cache = EmbeddingCache(tmp_path)
    assert Path(f"{cache.path_for('hash:64')}-journal").is_file()  # the half transaction
    texts = ["kept", "text 0", "text 1999"]
    found, misses = cache.lookup("hash:64", texts, 64)
    assert misses == [1, 2]
    assert np.array_equal(found[0], HashEmbedder(64).embed(["kept"])[0])
    assert cache.store("hash:64", texts[1:], HashEmbedder(64).embed(texts[1:])) == 2
    assert cache.lookup("hash:64", texts, 64)[1] == []
