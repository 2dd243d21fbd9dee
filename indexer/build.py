"""Catalogue → embeddings → FAISS index → a new bundle version, written atomically."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine import __version__
from engine.bundle import BundleContent, new_version_id, write_bundle
from engine.collaborative import ALSConfig
from engine.embed_cache import CACHE_DIR_NAME, CachedEmbedder, EmbeddingCache
from engine.embedder import BACKEND_TORCH, DEFAULT_MODEL, Embedder, backend_of, load_embedder
from engine.errors import InvalidArgument
from engine.gpu import require_gpu
from engine.interactions import InteractionsSpec, load_interactions, popularity
from engine.manifest import MANIFEST_FILE, IndexInfo, Manifest, ModelInfo
from engine.onnx_backend import ONNX_DIR_NAME
from engine.writer_lock import writer_lock
from indexer.autotune import DEFAULT_TARGET_RECALL, AutotuneConfig, autotune
from indexer.catalog import Catalog, CatalogSpec, load_catalog
from indexer.collaborative_build import extra_parts
from indexer.faiss_build import build_faiss_index, default_search_params

_BUNDLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Texts per call to the embedder: big enough to keep batches full, small enough for steady
# progress and bounded memory.
EMBED_CHUNK = 1024


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``vecrec index build`` needs."""

    catalog: CatalogSpec
    name: str
    indexes_dir: Path = Path("indexes")
    model: str = DEFAULT_MODEL
    factory: str = "auto"
    batch_size: int = 64
    interactions: InteractionsSpec | None = None
    progress: bool = True
    threads: int | None = None
    # Reuse embeddings of unchanged texts from earlier builds (engine/embed_cache.py).
    cache: bool = True
    cache_dir: Path | None = None  # default: <indexes_dir>/.cache, shared by every index
    backend: str = BACKEND_TORCH  # torch, onnx or onnx-int8 (engine/embedder.py)
    # --factory auto: the recall@10 the autotuner's chosen setting must reach (indexer/autotune.py)
    target_recall: float = DEFAULT_TARGET_RECALL
    gpu: bool = False  # embed on CUDA, train/fill IVF and Flat on the GPU (engine/gpu.py)
    # Optional bundle parts (indexer/collaborative_build.py): CF vectors learnt from the
    # interactions (serving defaults to hybrid mode then) and a BM25 index of the texts.
    collaborative: bool = False
    lexical: bool = False
    cf_positive_threshold: float | None = None  # CF positives: weight >= it (None: all)

    @property
    def cache_path(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.indexes_dir / CACHE_DIR_NAME


@dataclass(frozen=True)
class BuildReport:
    path: Path
    manifest: Manifest
    seconds: dict[str, float] = field(default_factory=dict)
    embedded: int = 0  # texts the model embedded
    cached: int = 0  # texts whose vectors came from the embedding cache


def validate_name(name: str) -> str:
    if not _BUNDLE_NAME.match(name):
        raise InvalidArgument(
            f"index name {name!r} must be 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field="name",
        )
    return name


def embed_texts(
    embedder: Embedder, texts: list[str], *, batch_size: int, progress: bool
) -> np.ndarray:
    """``float32 (n, d)`` unit vectors of ``texts``, embedded in chunks with a progress bar."""
    out = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    with tqdm(total=len(texts), unit="item", desc="embedding", disable=not progress) as bar:
        for start in range(0, len(texts), EMBED_CHUNK):
            chunk = texts[start : start + EMBED_CHUNK]
            out[start : start + len(chunk)] = embedder.embed(chunk, batch_size=batch_size)
            bar.update(len(chunk))
    return out


def build(config: BuildConfig, embedder: Embedder | None = None) -> BuildReport:
    """Build a new version of index ``config.name`` and make it current.

    Nothing under ``indexes_dir`` changes unless the whole build succeeds (the embedding cache
    aside: it keeps what was embedded, so a failed or killed build's rerun is quicker). Holds the
    index's writer lock throughout: a concurrent build, rollback or gc fails with IndexLocked.
    """
    validate_name(config.name)
    if config.batch_size < 1:
        raise InvalidArgument("batch size must be >= 1", field="batch_size")
    with writer_lock(config.indexes_dir / config.name):
        return _build_locked(config, embedder)


def _build_locked(config: BuildConfig, embedder: Embedder | None) -> BuildReport:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    catalog = load_catalog(config.catalog)
    interactions = load_interactions(config.interactions) if config.interactions else None
    seconds["read"] = time.perf_counter() - started

    if config.gpu:
        require_gpu()
    embedder = embedder or load_embedder(
        config.model,
        threads=config.threads,
        backend=config.backend,
        export_dir=config.cache_path / ONNX_DIR_NAME,
        device="cuda" if config.gpu else "cpu",
    )
    cached = CachedEmbedder(embedder, EmbeddingCache(config.cache_path)) if config.cache else None
    mark = time.perf_counter()
    if cached is not None:
        vectors = cached.embed(
            catalog.texts, batch_size=config.batch_size, progress=config.progress
        )
    else:
        vectors = embed_texts(
            embedder, catalog.texts, batch_size=config.batch_size, progress=config.progress
        )
    seconds["embed"] = time.perf_counter() - mark

    mark = time.perf_counter()
    tuned = None
    if config.factory == "auto":
        tuned = autotune(
            vectors, AutotuneConfig(target_recall=config.target_recall), gpu=config.gpu
        )
        factory, chosen_by, index = tuned.factory, "auto", tuned.index
    else:
        factory, chosen_by = config.factory, "user"
        index = build_faiss_index(vectors, factory, gpu=config.gpu)
    seconds["index"] = time.perf_counter() - mark

    items = catalog.table.copy()
    if interactions is not None:
        items["popularity"] = popularity(interactions, catalog.ids)
    manifest = _manifest(
        config, catalog, embedder, factory, chosen_by, index, interactions is not None
    )
    mark = time.perf_counter()
    extras, described = extra_parts(
        item_ids=catalog.ids,
        texts=catalog.texts,
        interactions=interactions,
        collaborative=config.collaborative,
        lexical=config.lexical,
        als=ALSConfig(positive_threshold=config.cf_positive_threshold),
    )
    manifest = dataclasses.replace(manifest, extras=described)
    seconds["extras"] = time.perf_counter() - mark
    if tuned is not None:
        manifest = dataclasses.replace(
            manifest,
            index=dataclasses.replace(
                manifest.index, search_params=dict(tuned.params), autotune=tuned.record()
            ),
        )
    mark = time.perf_counter()
    path = write_bundle(
        config.indexes_dir / config.name,
        BundleContent(index=index, vectors=vectors, items=items, manifest=manifest, extras=extras),
    )
    seconds["write"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    written = Manifest.from_json((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    return BuildReport(
        path=path,
        manifest=written,
        seconds=seconds,
        embedded=cached.embedded if cached is not None else len(catalog),
        cached=cached.hits if cached is not None else 0,
    )


def _manifest(
    config: BuildConfig,
    catalog: Catalog,
    embedder: Embedder,
    factory: str,
    chosen_by: str,
    index: object,
    has_popularity: bool,
) -> Manifest:
    now = dt.datetime.now(dt.UTC)
    return Manifest(
        name=config.name,
        version=new_version_id(now),
        # Milliseconds: rollback's "previous version" is by creation time, and builds can
        # follow each other within a second.
        created_at=now.isoformat(timespec="milliseconds"),
        vecrec_version=__version__,
        model=ModelInfo(
            spec=embedder.spec,
            dimension=embedder.dimension,
            max_seq_length=embedder.max_seq_length,
            backend=backend_of(embedder),
        ),
        index=IndexInfo(
            factory=factory, search_params=default_search_params(index), chosen_by=chosen_by
        ),
        item_count=len(catalog),
        text_template=catalog.text_template,
        metadata_columns=catalog.metadata_columns,
        list_columns=catalog.list_columns,
        has_popularity=has_popularity,
        files={},
        source={
            "catalog": str(config.catalog.path),
            "id_column": config.catalog.id_column,
            # Live updates read upsert files with the same list splitting as the build.
            "list_separators": dict(config.catalog.list_columns),
            "joins": [f"{j.name}={j.path}:{j.key}:{j.column}" for j in config.catalog.joins],
            "interactions": str(config.interactions.path) if config.interactions else None,
        },
    )
