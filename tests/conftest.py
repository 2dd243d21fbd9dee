"""Shared fixtures: slices of the MovieLens sample, built once per session.

* ``hash_index``: 600 movies embedded by the deterministic hash embedder (plumbing tests).
* ``real_index``: the 1,000 most-rated movies embedded by the real all-MiniLM-L6-v2 (quality
  tests). Embedding takes ~30 s on two cores, so it is built once and its vectors are memoised
  by text, for the tests that build further indexes from the same items.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import Embedder, HashEmbedder, SentenceTransformerEmbedder
from engine.embedder import normalize_rows
from indexer.build import BuildConfig, build
from indexer.sample import SAMPLE_DIR, sample_config

ROOT = Path(__file__).resolve().parents[1]
REAL_SLICE = 1000
HASH_SLICE = 600


class MemoEmbedder:
    """Wraps an embedder and remembers every text's vector (same spec, same vectors)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.memo: dict[str, np.ndarray] = {}

    @property
    def spec(self) -> str:
        return self.inner.spec

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def max_seq_length(self) -> int | None:
        return self.inner.max_seq_length

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            for text, vector in zip(
                missing, self.inner.embed(missing, batch_size=batch_size), strict=True
            ):
                self.memo[text] = vector
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return normalize_rows(np.stack([self.memo[t] for t in texts]))


def clustered(n: int, d: int, seed: int = 0, centers: int = 20) -> np.ndarray:
    """``float32 (n, d)`` unit vectors around ``centers`` random directions (ANN test data)."""
    rng = np.random.default_rng(seed)
    middles = rng.normal(size=(centers, d))
    x = middles[rng.integers(0, centers, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def movies_slice(directory: Path, ids: Sequence[str]) -> Path:
    """A movies.csv holding only ``ids`` (in catalogue order)."""
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    path = directory / "movies.csv"
    movies[movies["movieId"].isin(set(ids))].to_csv(path, index=False)
    return path


def most_rated(n: int) -> list[str]:
    ratings = pd.read_csv(SAMPLE_DIR / "ratings.csv", dtype={"movieId": str})
    return ratings["movieId"].value_counts().index[:n].tolist()


def sample_build(
    indexes: Path, catalog: Path, name: str, *, factory: str = "auto", popularity: bool = True
) -> BuildConfig:
    config = sample_config(indexes, name=name)
    return dataclasses.replace(
        config,
        catalog=dataclasses.replace(config.catalog, path=catalog),
        factory=factory,
        progress=False,
        interactions=config.interactions if popularity else None,
    )


def hash_bundles(work: Path, items: int, factories: dict[str, str]) -> dict[str, Path]:
    """Index roots, one per ``name: factory``, of the first ``items`` movies (hash embedder, no
    popularity): the same catalogue under several index types."""
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    catalog = movies_slice(work, movies["movieId"][:items].tolist())
    out = {}
    for name, factory in factories.items():
        config = sample_build(work / "indexes", catalog, name, factory=factory, popularity=False)
        build(config, embedder=HashEmbedder(64))
        out[name] = work / "indexes" / name
    return out


@pytest.fixture(scope="session")
def hash_embedder() -> HashEmbedder:
    return HashEmbedder(64)


@pytest.fixture(scope="session")
def hash_index(tmp_path_factory: pytest.TempPathFactory, hash_embedder: HashEmbedder) -> Path:
    """``indexes/hashml`` over the first 600 movies, with popularity; returns the index root."""
    work = tmp_path_factory.mktemp("hash")
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    catalog = movies_slice(work, movies["movieId"][:HASH_SLICE].tolist())
    build(sample_build(work / "indexes", catalog, "hashml"), embedder=hash_embedder)
    return work / "indexes" / "hashml"


@pytest.fixture(scope="session")
def minilm() -> MemoEmbedder:
    return MemoEmbedder(SentenceTransformerEmbedder(threads=2))


@pytest.fixture(scope="session")
def real_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return movies_slice(tmp_path_factory.mktemp("real"), most_rated(REAL_SLICE))


@pytest.fixture(scope="session")
def real_index(
    tmp_path_factory: pytest.TempPathFactory, real_catalog: Path, minilm: MemoEmbedder
) -> Path:
    """``indexes/realml``: the 1,000 most-rated movies, real MiniLM, exact Flat index."""
    indexes = tmp_path_factory.mktemp("real-indexes")
    build(sample_build(indexes, real_catalog, "realml"), embedder=minilm)
    return indexes / "realml"
