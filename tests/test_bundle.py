"""Bundle format: verified loads, refusal of tampered files, atomic and versioned writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

from engine import Bundle, BundleCorrupt, BundleNotFound, HashEmbedder, Recommender
from engine.bundle import CURRENT_FILE, TMP_PREFIX, resolve_bundle_dir
from engine.errors import CatalogError
from engine.manifest import INDEX_FILE, ITEMS_FILE, MANIFEST_FILE, VECTORS_FILE
from indexer.build import build
from indexer.sample import SAMPLE_DIR
from tests.conftest import movies_slice, sample_build


@pytest.fixture()
def index_copy(hash_index: Path, tmp_path: Path) -> Path:
    """A private copy of the shared hash index, safe to tamper with."""
    target = tmp_path / "hashml"
    shutil.copytree(hash_index, target)
    return target


def _flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_load_verifies_and_exposes_manifest(hash_index: Path) -> None:
    bundle = Bundle.load(hash_index)
    manifest = bundle.manifest
    assert manifest.item_count == len(bundle) == bundle.vectors.shape[0]
    assert bundle.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(bundle.vectors, axis=1), 1.0, atol=1e-5)
    assert manifest.model.spec == "hash:64" and manifest.model.dimension == 64
    assert manifest.index.factory == "Flat" and manifest.index.chosen_by == "auto"
    assert set(manifest.files) == {INDEX_FILE, ITEMS_FILE, VECTORS_FILE}
    assert manifest.has_popularity and bundle.popularity is not None
    # Row i of the item table is FAISS id i.
    _, found = bundle.index.search(np.ascontiguousarray(bundle.vectors[[5]]), 1)
    assert found[0, 0] == 5


@pytest.mark.parametrize("name", [INDEX_FILE, ITEMS_FILE, VECTORS_FILE])
def test_tampered_file_is_refused(index_copy: Path, name: str) -> None:
    version = resolve_bundle_dir(index_copy)
    _flip_byte(version / name)
    with pytest.raises(BundleCorrupt, match="checksum"):
        Bundle.load(index_copy)
    with pytest.raises(BundleCorrupt):
        Recommender.open(index_copy, embedder=HashEmbedder(64))


def test_truncated_and_missing_files_are_refused(index_copy: Path) -> None:
    version = resolve_bundle_dir(index_copy)
    vectors = version / VECTORS_FILE
    vectors.write_bytes(vectors.read_bytes()[:-100])
    with pytest.raises(BundleCorrupt, match="bytes"):
        Bundle.load(index_copy)
    vectors.unlink()
    with pytest.raises(BundleCorrupt, match="lacks"):
        Bundle.load(index_copy)


def test_bad_manifest_is_refused(index_copy: Path) -> None:
    manifest_path = resolve_bundle_dir(index_copy) / MANIFEST_FILE
    raw = json.loads(manifest_path.read_text())
    manifest_path.write_text("{not json")
    with pytest.raises(BundleCorrupt, match="not valid JSON"):
        Bundle.load(index_copy)
    raw["format_version"] = 99
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(BundleCorrupt, match="format version"):
        Bundle.load(index_copy)
    del raw["model"]
    raw["format_version"] = 1
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(BundleCorrupt, match="malformed"):
        Bundle.load(index_copy)


def test_manifest_counts_must_match_files(index_copy: Path) -> None:
    """A bundle re-checksummed after swapping in a different-size index is still refused."""
    version = resolve_bundle_dir(index_copy)
    index = faiss.IndexFlatIP(64)
    index.add(np.eye(64, dtype=np.float32)[:3])
    faiss.write_index(index, str(version / INDEX_FILE))
    manifest_path = version / MANIFEST_FILE
    raw = json.loads(manifest_path.read_text())
    import hashlib

    data = (version / INDEX_FILE).read_bytes()
    raw["files"][INDEX_FILE] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(BundleCorrupt, match="index holds 3 vectors"):
        Bundle.load(index_copy)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleNotFound, match="does not exist"):
        Bundle.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleNotFound, match="not an index bundle"):
        Bundle.load(tmp_path / "empty")


def test_current_pointing_nowhere_is_refused(index_copy: Path) -> None:
    (index_copy / CURRENT_FILE).write_text("20990101T000000Z-ffffff\n")
    with pytest.raises(BundleCorrupt, match="points at"):
        Bundle.load(index_copy)
    (index_copy / CURRENT_FILE).write_text("../../etc\n")
    with pytest.raises(BundleCorrupt, match="no valid version"):
        Bundle.load(index_copy)


def _movies(tmp_path: Path, n: int) -> Path:
    movies = pd.read_csv(SAMPLE_DIR / "movies.csv", dtype={"movieId": str})
    return movies_slice(tmp_path, movies["movieId"][:n].tolist())


def test_rebuild_adds_a_version_and_switches_current(tmp_path: Path) -> None:
    embedder = HashEmbedder(32)
    catalog = _movies(tmp_path, 50)
    first = build(sample_build(tmp_path / "idx", catalog, "m", popularity=False), embedder)
    root = tmp_path / "idx" / "m"
    assert (root / CURRENT_FILE).read_text().strip() == first.path.name
    second = build(sample_build(tmp_path / "idx", catalog, "m", popularity=False), embedder)
    assert second.path != first.path and first.path.is_dir()
    assert (root / CURRENT_FILE).read_text().strip() == second.path.name
    assert Bundle.load(root).path == second.path
    assert Bundle.load(first.path).manifest.version == first.manifest.version


def test_failed_build_leaves_existing_bundle_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = HashEmbedder(32)
    catalog = _movies(tmp_path, 50)
    good = build(sample_build(tmp_path / "idx", catalog, "m", popularity=False), embedder)
    root = tmp_path / "idx" / "m"
    before = sorted(p.name for p in root.iterdir())
    pointer = (root / CURRENT_FILE).read_text()

    # 1. Bad input: duplicate ids. Refused before anything is written.
    dup = tmp_path / "dup.csv"
    frame = pd.read_csv(catalog, dtype={"movieId": str})
    pd.concat([frame, frame.iloc[:1]]).to_csv(dup, index=False)
    with pytest.raises(CatalogError, match="duplicate"):
        build(sample_build(tmp_path / "idx", dup, "m", popularity=False), embedder)

    # 2. A crash in the middle of writing the files (disk full, kill): no half version appears.
    def broken_write(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken_write)
    with pytest.raises(OSError, match="disk full"):
        build(sample_build(tmp_path / "idx", catalog, "m", popularity=False), embedder)
    monkeypatch.undo()

    assert sorted(p.name for p in root.iterdir()) == before
    assert not any(p.name.startswith(TMP_PREFIX) for p in root.iterdir())
    assert (root / CURRENT_FILE).read_text() == pointer
    assert Bundle.load(root).path == good.path


def test_stale_temporary_of_dead_build_is_removed(tmp_path: Path) -> None:
    embedder = HashEmbedder(32)
    catalog = _movies(tmp_path, 30)
    root = tmp_path / "idx" / "m"
    stale = root / f"{TMP_PREFIX}20200101T000000Z-abcdef-999999999"
    stale.mkdir(parents=True)
    (stale / "index.faiss").write_bytes(b"half")
    build(sample_build(tmp_path / "idx", catalog, "m", popularity=False), embedder)
    assert not stale.exists()
    with pytest.raises(BundleNotFound):
        # A temporary directory is never mistaken for a bundle.
        Bundle.load(root / "missing")


def test_the_index_is_mapped_read_only_and_answers_as_the_loaded_one(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Served bundles map their index (shared by every worker through the page cache); a
    mapped index answers exactly as one read whole, and compaction works on a private copy."""
    from engine.bundle import owned_index
    from tests.conftest import hash_bundles

    factories = {
        "flat": "Flat",
        "hnsw": "HNSW16",
        "hnsw-fp16": "HNSW16,SQfp16",
        "ivf": "IVF8,Flat",
        "sq": "IVF8,SQ8",
    }
    roots = hash_bundles(tmp_path_factory.mktemp("mapped"), 400, factories)
    queries = np.random.default_rng(0).standard_normal((7, 64)).astype(np.float32)
    for name, root in roots.items():
        mapped, whole = Bundle.load(root), Bundle.load(root, mmap=False)
        found = mapped.index.search(queries, 10)
        assert np.array_equal(found[1], whole.index.search(queries, 10)[1]), name
        assert np.array_equal(found[0], whole.index.search(queries, 10)[0]), name
        copy = owned_index(mapped)
        copy.reset()  # on the mapped index itself FAISS would abort the process
        assert copy.ntotal == 0 and mapped.index.ntotal == 400
    flat = faiss.downcast_index(Bundle.load(roots["flat"]).index)
    assert not flat.codes.is_owned  # the codes are the file's pages, not a private copy
    assert faiss.downcast_index(Bundle.load(roots["flat"], mmap=False).index).codes.is_owned
