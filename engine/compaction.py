"""Compaction: fold a version's live updates into a new version, with no tombstones left.

The new version holds the live rows only, in their order, and a fresh FAISS index of them: a
clone of the old index emptied and refilled, so IVF keeps its trained centroids (deleted ids
are gone, nothing is retrained) and HNSW gets a graph without dead nodes. Nothing is embedded.

The slow part (:func:`compacted_content`) runs without the writer lock, so updates keep being
accepted meanwhile; :func:`finish` then takes the lock, writes the version, carries over the
batches logged since the snapshot into the new version's log, and only then switches
``CURRENT``: no acknowledged update is ever lost or hidden.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.bundle import (
    Bundle,
    BundleContent,
    new_version_id,
    owned_index,
    resolve_bundle_dir,
    set_current,
    write_bundle,
)
from engine.errors import IndexLocked
from engine.extras import carried_writers
from engine.wal import log_path, read_log, write_log
from engine.writer_lock import writer_lock


@dataclass(frozen=True)
class CompactionResult:
    path: Path  # the new version directory, now current
    items: int
    folded: int  # rows removed (tombstones) plus rows moved into the index (appended)
    carried: int  # batches logged during the compaction, now in the new version's log


def compacted_content(bundle: Bundle) -> BundleContent:
    """The live rows of ``bundle`` as a new version's content (``bundle`` is not changed)."""
    rows = np.fromiter(sorted(bundle.row_of.values()), dtype=np.int64, count=bundle.live_count)
    vectors = np.ascontiguousarray(bundle.vectors[rows], dtype=np.float32)
    items = bundle.items.iloc[rows].reset_index(drop=True)
    # The served index is memory-mapped and read-only (engine/bundle.py): reset and add a copy.
    index = owned_index(bundle)
    index.reset()  # keeps what training learnt (IVF centroids, SQ ranges), drops the vectors
    if len(vectors):
        index.add(vectors)
    # Optional parts (engine/extras.py) follow their rows; BM25 is rebuilt over the kept texts.
    extras, described = carried_writers(bundle, rows, items["text"].astype(str).tolist())
    now = dt.datetime.now(dt.UTC)
    manifest = replace(
        bundle.manifest,
        extras=described,
        version=new_version_id(now),
        created_at=now.isoformat(timespec="milliseconds"),
        item_count=len(rows),
        files={},
        source={
            **bundle.manifest.source,
            "compacted_from": bundle.manifest.version,
            "updates_folded": bundle.log.last_seq,
        },
    )
    return BundleContent(
        index=index, vectors=vectors, items=items, manifest=manifest, extras=extras
    )


def finish(snapshot: Bundle, content: BundleContent) -> CompactionResult:
    """Write ``content`` (compacted from ``snapshot``) as the current version.

    Raises :class:`IndexLocked` if another writer holds the lock or ``CURRENT`` moved on since
    the snapshot (a build or rollback won: its version stays current).
    """
    root = snapshot.root
    with writer_lock(root):
        if resolve_bundle_dir(root) != snapshot.path:
            raise IndexLocked(
                f"index {root.name!r} changed version during the compaction; nothing was replaced",
                field="name",
            )
        logged = read_log(log_path(root, snapshot.manifest.version), snapshot.dimension)
        tail = [b.changes for b in logged.batches if b.seq > snapshot.log.last_seq]
        path = write_bundle(root, content, make_current=False)
        if tail:
            write_log(log_path(root, content.manifest.version), tail)
        set_current(root, content.manifest.version)
    folded = len(snapshot) - snapshot.live_count + (len(snapshot) - snapshot.indexed_rows)
    return CompactionResult(path, content.manifest.item_count, folded, len(tail))


def compact(root: str | Path, snapshot: Bundle | None = None) -> CompactionResult:
    """Compact index ``root``'s current version (or ``snapshot`` of it) into a new version."""
    snapshot = snapshot or Bundle.load(root)
    return finish(snapshot, compacted_content(snapshot))
