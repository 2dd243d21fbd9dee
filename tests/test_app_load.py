"""Loading the served recommender: a hot reload reuses the loaded model when it can."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from api.app import load_recommender
from api.settings import Settings
from engine import HashEmbedder
from indexer.build import build
from indexer.sample import SAMPLE_DIR
from tests.conftest import movies_slice, sample_build


def test_reload_reuses_the_model_only_when_the_bundle_needs_the_same(tmp_path: Path) -> None:
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    catalog = movies_slice(tmp_path, movies["movieId"][:40].tolist())
    config = dataclasses.replace(sample_build(tmp_path / "idx", catalog, "m"), model="hash:16")
    build(config, embedder=HashEmbedder(16))
    settings = Settings(index=tmp_path / "idx" / "m", warm_up=True)
    first = load_recommender(settings)
    build(config, embedder=HashEmbedder(16))  # a new version, same model
    second = load_recommender(settings, first)
    assert second.bundle.path != first.bundle.path
    assert second.embedder is first.embedder
    build(config, embedder=HashEmbedder(24))  # a new version built with another model
    third = load_recommender(settings, second)
    assert third.embedder is not second.embedder and third.embedder.dimension == 24
    assert third.search("toy", k=3).ids
