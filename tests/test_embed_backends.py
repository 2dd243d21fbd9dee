"""Embedding backends: the ONNX export reproduces sentence-transformers, int8 stays close, the
export is cached, backends are recorded and checked, and caches never mix int8 with fp32."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import HashEmbedder, Recommender, RecommenderConfig
from engine.embed_cache import CachedEmbedder, EmbeddingCache
from engine.embedder import (
    BACKEND_ONNX,
    BACKEND_ONNX_INT8,
    BACKEND_TORCH,
    cache_spec,
    default_model_path,
    load_embedder,
)
from engine.errors import EmbedderError
from engine.manifest import MANIFEST_FILE, Manifest
from engine.onnx_backend import OnnxEmbedder, bundle_export_dir
from engine.onnx_export import check_exportable
from indexer.build import build
from indexer.sample import SAMPLE_DIR
from tests.conftest import MemoEmbedder, movies_slice, sample_build
from tests.test_cli import ok, vecrec

pytestmark = pytest.mark.slow

N_MOVIES = 300


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One indexes directory for the module, so its ``.cache/onnx`` export is made once."""
    return tmp_path_factory.mktemp("backends") / "indexes"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv")
    short = [f"{t}. Genres: {g}." for t, g in zip(movies.title, movies.genres, strict=True)]
    # A long text is truncated at 256 tokens; mixed lengths make padded batches.
    return [*short[:N_MOVIES], "heart failure and the kidney " * 120, "x"]


@pytest.fixture(scope="module")
def torch_vectors(minilm: MemoEmbedder, texts: list[str]) -> np.ndarray:
    return minilm.embed(texts)


def onnx(indexes: Path, backend: str) -> OnnxEmbedder:
    embedder = load_embedder(
        "all-MiniLM-L6-v2", backend=backend, threads=2, export_dir=indexes / ".cache" / "onnx"
    )
    assert isinstance(embedder, OnnxEmbedder)
    return embedder


def top10(x: np.ndarray) -> np.ndarray:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :10]


def test_onnx_fp32_reproduces_sentence_transformers(
    indexes: Path, texts: list[str], torch_vectors: np.ndarray
) -> None:
    vectors = onnx(indexes, BACKEND_ONNX).embed(texts, batch_size=16)
    assert vectors.dtype == np.float32 and vectors.shape == torch_vectors.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Same weights, same pooling, same truncation: equal to float rounding.
    assert np.abs(vectors - torch_vectors).max() < 1e-5


def test_onnx_int8_stays_close_to_torch(
    indexes: Path, texts: list[str], torch_vectors: np.ndarray
) -> None:
    vectors = onnx(indexes, BACKEND_ONNX_INT8).embed(texts)
    cosine = (vectors * torch_vectors).sum(axis=1)
    assert cosine.min() > 0.95, cosine.min()
    assert 0.999 > cosine.mean() > 0.97  # quantised: close, but not the same vectors
    a, b = top10(vectors[:N_MOVIES]), top10(torch_vectors[:N_MOVIES])
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b, strict=True)])
    assert overlap > 0.8, overlap


def test_export_is_cached_and_reused(indexes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = onnx(indexes, BACKEND_ONNX_INT8)
    first.embed(["warm"])
    assert first.model_file is not None and first.model_file.is_file()
    assert first.model_file.parent.parent == indexes / ".cache" / "onnx"

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr("engine.onnx_export.export_fp32", no_export)
    monkeypatch.setattr("engine.onnx_export.quantize_int8", no_export)
    second = onnx(indexes, BACKEND_ONNX_INT8)
    assert np.allclose(second.embed(["Toy Story"]), first.embed(["Toy Story"]))
    assert second.model_file == first.model_file


def test_only_mean_pooling_models_are_exported(tmp_path: Path) -> None:
    model = tmp_path / "cls-model"
    shutil.copytree(default_model_path(), model, ignore=shutil.ignore_patterns("*.safetensors"))
    config = model / "1_Pooling" / "config.json"
    pooling = json.loads(config.read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    config.write_text(json.dumps(pooling))
    with pytest.raises(EmbedderError, match="mean pooling"):
        check_exportable(model)
    (model / "modules.json").write_text("[]")
    with pytest.raises(EmbedderError, match="Transformer"):
        check_exportable(model)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(EmbedderError, match="backend 'tensorrt'") as info:
        load_embedder("all-MiniLM-L6-v2", backend="tensorrt")
    assert info.value.field == "backend"


class Int8Hash(HashEmbedder):
    """A hash embedder claiming to be int8 (the cache only reads the claim)."""

    backend = BACKEND_ONNX_INT8


def test_int8_vectors_never_mix_with_fp32_in_the_cache(tmp_path: Path) -> None:
    assert cache_spec("m", BACKEND_TORCH) == cache_spec("m", BACKEND_ONNX) == "m"
    assert cache_spec("m", BACKEND_ONNX_INT8) != "m"
    cache = EmbeddingCache(tmp_path)
    fp32 = CachedEmbedder(HashEmbedder(16), cache)
    int8 = CachedEmbedder(Int8Hash(16), cache)
    fp32.embed(["a", "b"])
    int8.embed(["a", "b"])
    assert int8.hits == 0 and int8.embedded == 2  # fp32 entries did not serve int8
    CachedEmbedder(Int8Hash(16), cache).embed(["a"])
    assert len(list(tmp_path.glob("*.sqlite3"))) == 2


def test_manifests_without_backend_or_autotune_still_load(real_index: Path) -> None:
    version = next(p for p in real_index.iterdir() if (p / MANIFEST_FILE).is_file())
    raw = json.loads((version / MANIFEST_FILE).read_text())
    raw["model"].pop("backend")
    raw["index"].pop("autotune")
    manifest = Manifest.from_json(json.dumps(raw))
    assert manifest.model.backend == BACKEND_TORCH and manifest.index.autotune is None


@pytest.fixture(scope="module")
def int8_index(indexes: Path, minilm: MemoEmbedder) -> Path:
    """A bundle of 300 movies built on onnx-int8 (exported into ``indexes/.cache/onnx``)."""
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    catalog = movies_slice(indexes.parent, movies["movieId"][:N_MOVIES].tolist())
    config = sample_build(indexes, catalog, "int8")
    build(dataclasses.replace(config, backend=BACKEND_ONNX_INT8))
    return indexes / "int8"


def test_bundle_records_its_backend_and_queries_with_it(int8_index: Path) -> None:
    recommender = Recommender.open(int8_index)
    assert recommender.bundle.manifest.model.backend == BACKEND_ONNX_INT8
    assert recommender.search("toy story animation", 5).ids
    embedder = recommender.embedder
    assert isinstance(embedder, OnnxEmbedder) and embedder.backend == BACKEND_ONNX_INT8
    # The query side found the build's export beside the bundle: nothing exported elsewhere.
    assert embedder.model_file is not None
    assert embedder.model_file.parent.parent == bundle_export_dir(recommender.bundle.path)


def test_incompatible_query_backend_is_refused_unless_allowed(int8_index: Path) -> None:
    refused = Recommender.open(int8_index, config=RecommenderConfig(backend=BACKEND_TORCH))
    with pytest.raises(EmbedderError, match="onnx-int8") as info:
        refused.search("toy story", 5)
    assert info.value.field == "backend"
    allowed = RecommenderConfig(backend=BACKEND_TORCH, allow_backend_mismatch=True)
    assert Recommender.open(int8_index, config=allowed).search("toy story", 5).ids


def test_fp32_backends_query_each_other(real_index: Path, indexes: Path) -> None:
    torch_hits = Recommender.open(real_index).search("space adventure", 10).ids
    onnx_side = Recommender(
        Recommender.open(real_index).bundle, onnx(indexes, BACKEND_ONNX)
    ).search("space adventure", 10)
    assert onnx_side.ids == torch_hits


def test_cli_backend_options(int8_index: Path) -> None:
    indexes_dir = int8_index.parent
    info = json.loads(ok(vecrec(indexes_dir, "index", "info", "int8", "--json", "--no-recall")))
    assert info["model"]["backend"] == BACKEND_ONNX_INT8
    refused = vecrec(indexes_dir, "search", "--index", "int8", "--backend", "torch", "toy")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "backend" in refused.stderr
    allowed = vecrec(
        indexes_dir, "search", "--index", "int8", "--backend", "torch",
        "--allow-backend-mismatch", "--json", "toy",
    )  # fmt: skip
    assert json.loads(ok(allowed))
