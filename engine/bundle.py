"""Index bundles on disk: atomic writes, verified loads.

Layout of one named index::

    indexes/NAME/
        CURRENT                      text file: the version directory now in use
        20261204T221500Z-3f9a1c/     one immutable version (a "bundle")
            manifest.json            model, index, counts, sha256 of every other file
            index.faiss              the FAISS index; row i of the item table is FAISS id i
            items.parquet            id, text, [popularity], metadata columns
            vectors.npy              float32 (n, d) L2-normalised item vectors (the exact twin)
        .tmp-<version>-<pid>/        a build in progress: never read, removed once its pid is gone
        .lock                        the writer lock: one build, rollback or gc at a time
                                     (engine/writer_lock.py)

A version directory appears only by ``rename`` of a complete temporary directory, and ``CURRENT``
changes only by ``os.replace``; a crash at any point leaves the previous version loadable.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from engine.errors import BundleCorrupt, BundleNotFound
from engine.fsutil import fsync_dir, fsync_file, sha256_file
from engine.hnswlib_index import DEFAULT_EF_SEARCH, HnswlibIndex, is_hnswlib_factory
from engine.manifest import (
    INDEX_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    FileInfo,
    Manifest,
)
from engine.wal import EMPTY as EMPTY_LOG
from engine.wal import LogState, log_path, read_log

CURRENT_FILE = "CURRENT"
TMP_PREFIX = ".tmp-"
# ``CURRENT.<pid>.tmp``: the pointer being written by set_current, left behind by a kill.
_POINTER_TMP = re.compile(rf"^{CURRENT_FILE}\.[0-9]+\.tmp$")
RESERVED_COLUMNS = ("id", "text", "popularity")


def new_version_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique version directory name."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"


def resolve_bundle_dir(path: str | Path) -> Path:
    """The version directory ``path`` designates: itself, or the one its ``CURRENT`` names."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file():
        return path
    current = path / CURRENT_FILE
    if current.is_file():
        version = current.read_text(encoding="utf-8").strip()
        if not version or "/" in version or version.startswith("."):
            raise BundleCorrupt(f"{current} names no valid version")
        target = path / version
        if not (target / MANIFEST_FILE).is_file():
            raise BundleCorrupt(f"{current} points at {version!r}, which holds no {MANIFEST_FILE}")
        return target
    if not path.exists():
        raise BundleNotFound(f"no index bundle at {path}: the path does not exist", field="index")
    raise BundleNotFound(
        f"{path} is not an index bundle (no {MANIFEST_FILE} and no {CURRENT_FILE})", field="index"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(root: Path) -> list[str]:
    """Delete temporary build directories (and ``CURRENT`` pointer temporaries) whose writing
    process is gone; returns their names."""
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith(TMP_PREFIX):
            pid_text = child.name.rsplit("-", 1)[-1]
        elif child.is_file() and _POINTER_TMP.match(child.name):
            pid_text = child.name.split(".")[1]
        else:
            continue
        pid = int(pid_text) if pid_text.isdigit() else -1
        if pid <= 0 or not _pid_alive(pid):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            removed.append(child.name)
    return removed


def read_index(path: Path, *, mmap: bool, manifest: Manifest | None = None) -> Any:
    """The FAISS index at ``path``; with ``mmap``, its vectors and codes stay in the file's pages.

    Mapped, the codes are shared through the page cache by every process serving the bundle
    (uvicorn workers): a worker no longer holds its own copy (15 MiB for the sample's Flat index,
    1.5 GiB for 1M vectors in HNSW32). A mapped index is read-only: FAISS aborts the process on
    an ``add`` or ``reset``, so whatever changes an index works on :func:`owned_index`. Index
    types FAISS cannot map are read whole, and so is an hnswlib index (``manifest`` says which
    kind the file holds; without one it is FAISS's).
    """
    if manifest is not None and is_hnswlib_factory(manifest.index.factory):
        ef = manifest.index.search_params.get("efSearch", DEFAULT_EF_SEARCH)
        return HnswlibIndex.read(path, manifest.model.dimension, int(ef))
    if mmap:
        try:
            return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:
            pass  # a type without mapped storage: read it whole below
    return faiss.read_index(str(path))


def owned_index(bundle: Bundle) -> Any:
    """A private, writable copy of ``bundle``'s index, read from its file."""
    return read_index(bundle.path / INDEX_FILE, mmap=False, manifest=bundle.manifest)


@dataclass(frozen=True)
class BundleContent:
    """What a build hands to :func:`write_bundle`. ``vectors`` is ``float32 (n, d)``."""

    index: Any  # faiss.Index
    vectors: np.ndarray
    items: pd.DataFrame
    manifest: Manifest  # ``files`` is filled in by write_bundle
    # Writers of optional parts (engine/extras.py): each writes its files into the version
    # directory and returns their names, which get checksums in the manifest like the others.
    extras: tuple[Callable[[Path], list[str]], ...] = ()


def write_bundle(root: str | Path, content: BundleContent, *, make_current: bool = True) -> Path:
    """Write a new version under ``root`` (``indexes/NAME``) and make it current, atomically.

    Returns the new version directory. With ``make_current=False`` the caller switches
    ``CURRENT`` itself (a compaction first gives the new version its update log).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    version = content.manifest.version
    tmp = root / f"{TMP_PREFIX}{version}-{os.getpid()}"
    tmp.mkdir()
    try:
        if isinstance(content.index, HnswlibIndex):
            content.index.write(tmp / INDEX_FILE)
        else:
            faiss.write_index(content.index, str(tmp / INDEX_FILE))
        np.save(tmp / VECTORS_FILE, np.ascontiguousarray(content.vectors, dtype=np.float32))
        content.items.to_parquet(tmp / ITEMS_FILE, index=False)
        files = {}
        extra_files = [name for write in content.extras for name in write(tmp)]
        for name in (INDEX_FILE, ITEMS_FILE, VECTORS_FILE, *extra_files):
            fsync_file(tmp / name)
            files[name] = FileInfo(
                sha256=sha256_file(tmp / name), bytes=(tmp / name).stat().st_size
            )
        manifest = replace(content.manifest, files=files)
        (tmp / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        fsync_file(tmp / MANIFEST_FILE)
        fsync_dir(tmp)
        final = root / version
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(root)
    if make_current:
        set_current(root, version)
    return final


def set_current(root: Path, version: str) -> None:
    """Point ``root/CURRENT`` at ``version`` with an atomic replace."""
    pointer_tmp = root / f"{CURRENT_FILE}.{os.getpid()}.tmp"
    pointer_tmp.write_text(version + "\n", encoding="utf-8")
    fsync_file(pointer_tmp)
    os.replace(pointer_tmp, root / CURRENT_FILE)
    fsync_dir(root)


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Raise :class:`BundleCorrupt` unless every listed file has its recorded size and sha256."""
    for name, info in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise BundleCorrupt(f"bundle {directory} lacks {name}")
        size = path.stat().st_size
        if size != info.bytes:
            raise BundleCorrupt(
                f"bundle {directory}: {name} is {size} bytes, the manifest says {info.bytes}"
            )
        if sha256_file(path) != info.sha256:
            raise BundleCorrupt(f"bundle {directory}: {name} fails its sha256 checksum")
    missing = {INDEX_FILE, ITEMS_FILE, VECTORS_FILE} - set(manifest.files)
    if missing:
        raise BundleCorrupt(f"bundle {directory}: manifest lists no {sorted(missing)}")


class Bundle:
    """A loaded, verified bundle: the FAISS index, item table and vectors, plus live updates.

    Row ``i`` of :attr:`items` and :attr:`vectors` is the item FAISS knows as id ``i``. Live
    updates (engine/live.py) append rows after the ``indexed_rows`` the FAISS index holds and
    tombstone rows in :attr:`deleted` (a deleted item, or the old row of a replaced one); a
    tombstoned row is in no answer and not in :attr:`row_of`.
    """

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        index: Any,
        vectors: np.ndarray,
        items: pd.DataFrame,
        *,
        deleted: np.ndarray | None = None,
        row_of: dict[str, int] | None = None,
        log: LogState = EMPTY_LOG,
        buffer: Any = None,
        extras: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.index = index
        self.vectors = vectors
        self.items = items
        self.indexed_rows = int(index.ntotal)
        self.deleted = deleted
        # ``live``: bool (n,) rows that may be answered; None while nothing is tombstoned.
        self.live: np.ndarray | None = None if deleted is None else ~deleted
        self.log = log
        self.buffer = buffer  # engine.live.RowBuffer shared with later snapshots, once updated
        # Optional parts loaded on first use (engine/extras.py), shared with later snapshots.
        self.extras: dict[str, Any] = extras if extras is not None else {}
        self.ids: np.ndarray = items["id"].to_numpy(dtype=object)
        self.row_of: dict[str, int] = (
            row_of if row_of is not None else {item_id: row for row, item_id in enumerate(self.ids)}
        )
        self._columns: dict[str, np.ndarray] | None = None
        self.popularity: np.ndarray | None = (
            items["popularity"].to_numpy(dtype=np.float64, na_value=0.0)
            if "popularity" in items
            else None
        )

    @property
    def live_count(self) -> int:
        """Items that can be answered (rows minus tombstones)."""
        return len(self.row_of)

    @property
    def root(self) -> Path:
        """The index root ``indexes/NAME`` this version lives in."""
        return self.path.parent

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dimension(self) -> int:
        return self.manifest.model.dimension

    @classmethod
    def load(
        cls, path: str | Path, *, verify: bool = True, mmap: bool = True, updates: bool = True
    ) -> Bundle:
        """Load the bundle at ``path`` (a version directory or an ``indexes/NAME`` root).

        With ``verify`` (the default) every file is checked against the manifest's sha256 first.
        With ``updates`` (the default) the version's update log is replayed on top.
        """
        directory = resolve_bundle_dir(path)
        manifest = Manifest.from_json((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        if verify:
            verify_files(directory, manifest)
        try:
            index = read_index(directory / INDEX_FILE, mmap=mmap, manifest=manifest)
            vectors = np.load(directory / VECTORS_FILE, mmap_mode="r" if mmap else None)
            # Still mapped, but a plain ndarray: every np.memmap slice runs Python-level
            # __getitem__/__array_finalize__ hooks, ~9 % of a /recommend's server time.
            vectors = np.asarray(vectors)
            items = pd.read_parquet(directory / ITEMS_FILE)
        except Exception as exc:
            raise BundleCorrupt(f"bundle {directory} has an unreadable file: {exc}") from exc
        n, d = manifest.item_count, manifest.model.dimension
        checks = [
            (vectors.dtype == np.float32, f"vectors are {vectors.dtype}, not float32"),
            (vectors.shape == (n, d), f"vectors have shape {vectors.shape}, expected {(n, d)}"),
            (index.ntotal == n, f"index holds {index.ntotal} vectors, expected {n}"),
            (index.d == d, f"index dimension {index.d}, expected {d}"),
            (len(items) == n, f"item table has {len(items)} rows, expected {n}"),
            ("id" in items and "text" in items, "item table lacks the id or text column"),
        ]
        for ok, message in checks:
            if not ok:
                raise BundleCorrupt(f"bundle {directory}: {message}")
        if items["id"].duplicated().any():
            raise BundleCorrupt(f"bundle {directory}: duplicate item ids in the item table")
        bundle = cls(directory, manifest, index, vectors, items)
        if updates:
            state = read_log(log_path(directory.parent, manifest.version), d)
            if state.batches:
                from engine.live import apply_batches  # live builds on Bundle

                bundle = apply_batches(bundle, state)
        return bundle

    def item_record(self, row: int) -> dict[str, Any]:
        """The item table's row as plain Python values (lists for list columns)."""
        if self._columns is None:
            # Column arrays make a row lookup ~50x cheaper than DataFrame.iloc.
            self._columns = {c: self.items[c].to_numpy(dtype=object) for c in self.items.columns}
        return {name: plain_value(values[row]) for name, values in self._columns.items()}


def plain_value(value: Any) -> Any:
    """A JSON-friendly Python value: lists for arrays, None for missing values."""
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
