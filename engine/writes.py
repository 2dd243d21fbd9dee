"""Committing live updates: validate and embed, log durably under the writer lock, apply.

:func:`prepare` turns client items into changes (slow: it embeds) without any lock;
:func:`commit` appends them to the update log under the index's writer lock and returns the new
snapshot. The server keeps its snapshot in memory and commits onto it; the command line loads,
commits and exits (:func:`update_index`). Both see each other's writes: a commit first applies any
batch another process logged since the snapshot was taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.bundle import Bundle, resolve_bundle_dir
from engine.changes import Change, Delete, ItemFields, RecordSchema, Upsert, check_id
from engine.compaction import CompactionResult, compact
from engine.embedder import Embedder, load_embedder
from engine.errors import EmbedderError, IndexLocked, InvalidArgument
from engine.live import apply_batches, apply_changes
from engine.wal import append_batch, log_path, read_log
from engine.writer_lock import writer_lock


@dataclass(frozen=True)
class CompactionPolicy:
    """Compact once tombstones plus appended rows reach ``fraction`` of the indexed rows (and
    at least ``min_changes``): past that, HNSW walks too many dead nodes and the exact scan of
    appended rows stops being cheap."""

    fraction: float = 0.1
    min_changes: int = 1000

    def due(self, bundle: Bundle) -> bool:
        return pending_changes(bundle) >= max(self.min_changes, self.fraction * bundle.indexed_rows)


def pending_changes(bundle: Bundle) -> int:
    """Tombstoned rows plus rows appended after the index: what a compaction would fold."""
    tombstones = 0 if bundle.deleted is None else int(np.count_nonzero(bundle.deleted))
    return tombstones + len(bundle) - bundle.indexed_rows


@dataclass(frozen=True)
class Prepared:
    """Changes ready to commit, and what the request asked that needs no change."""

    changes: tuple[Change, ...]
    created: tuple[str, ...]  # upserted ids the snapshot did not know
    replaced: tuple[str, ...]
    deleted: tuple[str, ...]
    missing: tuple[str, ...]  # delete requests for ids the snapshot does not hold


def prepare(
    bundle: Bundle,
    upserts: Sequence[ItemFields],
    deletes: Sequence[str],
    embedder: Embedder,
    *,
    prefix: str = "upsert",
) -> Prepared:
    """Validate ``upserts`` and ``deletes`` against ``bundle`` and embed the upserted texts.

    Errors name fields as ``upsert[2].fields.year``; with ``prefix=""`` (one item) as
    ``fields.year``.
    """
    if not upserts and not deletes:
        raise InvalidArgument(
            "nothing to change: give items to upsert or ids to delete", field="items"
        )
    model = bundle.manifest.model
    if embedder.dimension != model.dimension or embedder.spec != model.spec:
        raise EmbedderError(
            f"embedder {embedder.spec!r} is not the model the index was built with "
            f"({model.spec!r})",
            field="model",
        )
    schema = RecordSchema(bundle.manifest, bundle.items)
    records = [
        schema.record(item, f"{prefix}[{i}]" if prefix else "") for i, item in enumerate(upserts)
    ]
    delete_ids = [
        check_id(item_id, f"delete[{i}]" if prefix else "id") for i, item_id in enumerate(deletes)
    ]
    seen: set[str] = set()
    for position, item_id in enumerate([r["id"] for r in records] + delete_ids):
        if item_id in seen:
            raise InvalidArgument(
                f"item {item_id!r} appears twice in one batch; send one change per item",
                field="upsert" if position < len(records) else "delete",
            )
        seen.add(item_id)

    changes: list[Change] = []
    if records:
        vectors = embedder.embed([str(r["text"]) for r in records])
        changes.extend(Upsert(str(r["id"]), r, v) for r, v in zip(records, vectors, strict=True))
    present = [i for i in delete_ids if i in bundle.row_of]
    changes.extend(Delete(i) for i in present)
    upserted = [str(r["id"]) for r in records]
    return Prepared(
        changes=tuple(changes),
        created=tuple(i for i in upserted if i not in bundle.row_of),
        replaced=tuple(i for i in upserted if i in bundle.row_of),
        deleted=tuple(present),
        missing=tuple(i for i in delete_ids if i not in bundle.row_of),
    )


def commit(bundle: Bundle, changes: Sequence[Change]) -> Bundle:
    """Log ``changes`` durably on top of ``bundle`` and return the snapshot with them applied.

    Holds the index's writer lock (a build or another update at the same time fails with
    :class:`~engine.errors.IndexLocked`), and refuses with the same error if ``CURRENT`` moved
    on since ``bundle`` was loaded.
    """
    root = bundle.root
    with writer_lock(root):
        current = resolve_bundle_dir(root)
        if current != bundle.path:
            # The changes were validated and embedded for the snapshot's version; a new one
            # may have another schema or model.
            raise IndexLocked(
                f"index {root.name!r} moved to version {current.name} since this snapshot was "
                "loaded; reload and send the changes again",
                field="index",
            )
        path = log_path(root, bundle.manifest.version)
        state = bundle.log
        if _size(path) != state.size:  # another process logged batches since the snapshot
            state = read_log(path, bundle.dimension)
            bundle = apply_batches(bundle, state)
        if not changes:
            return bundle
        state = append_batch(path, state, changes)
        return apply_changes(bundle, state.batches[-1], state)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class UpdateReport:
    prepared: Prepared
    bundle: Bundle  # the snapshot after the update (before any compaction)
    compaction: CompactionResult | None


def update_index(
    root: str | Path,
    upserts: Sequence[ItemFields],
    deletes: Sequence[str],
    embedder: Embedder | None = None,
    *,
    policy: CompactionPolicy | None = CompactionPolicy(),
) -> UpdateReport:
    """Apply one batch of changes to the index at ``root`` (``indexes/NAME``) and log it.

    Compacts right away when ``policy`` says it is due (``None``: never).
    """
    bundle = Bundle.load(root)
    embedder = embedder or load_embedder(bundle.manifest.model.spec)
    prepared = prepare(bundle, upserts, deletes, embedder)
    updated = commit(bundle, prepared.changes)
    compaction = compact(root, updated) if policy is not None and policy.due(updated) else None
    return UpdateReport(prepared, updated, compaction)
