"""Live updates in memory: a new :class:`~engine.bundle.Bundle` snapshot per committed batch.

The FAISS index of a version is never modified. An upsert appends a row after the indexed rows
(the searcher scans appended rows exactly and merges them with the index's answer); a delete, or
the old row of a replaced item, becomes a tombstone that every search excludes through its
allowed-rows mask, on every index type. Compaction (engine/compaction.py) later folds rows and
tombstones into a fresh version.

Why not ``remove_ids``/``add`` on the FAISS index: FAISS indexes are not safe to modify while
other threads search them, and HNSW cannot remove at all. Snapshots keep every reader on an
immutable view with no lock on the query path, and one rule serves Flat, IVF and HNSW alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.bundle import Bundle
from engine.changes import Change, Delete, Upsert
from engine.wal import Batch, LogState


class RowBuffer:
    """Append-only ``float32 (capacity, d)`` rows shared by successive snapshots.

    A snapshot holds the view ``array[:n]``; appending writes only beyond every published
    snapshot's ``n``, so older snapshots never see their rows change. Growing copies into a new
    array and leaves older snapshots on the old one.
    """

    def __init__(self, rows: np.ndarray) -> None:
        n, d = rows.shape
        self.array = np.empty((max(n + n // 4, n + 1024), d), dtype=np.float32)
        self.array[:n] = rows
        self.size = n

    def append(self, rows: np.ndarray) -> np.ndarray:
        """Append ``float32 (m, d)`` rows; returns the view of all rows."""
        m = len(rows)
        if self.size + m > len(self.array):
            grown = np.empty(
                (max(2 * len(self.array), self.size + m), self.array.shape[1]), np.float32
            )
            grown[: self.size] = self.array[: self.size]
            self.array = grown
        self.array[self.size : self.size + m] = rows
        self.size += m
        return self.array[: self.size]


def apply_batches(bundle: Bundle, log: LogState) -> Bundle:
    """``bundle`` with the batches of ``log`` after ``bundle.log.last_seq`` applied."""
    fresh = [b for b in log.batches if b.seq > bundle.log.last_seq]
    changes = [change for batch in fresh for change in batch.changes]
    return _apply(bundle, changes, log)


def apply_changes(bundle: Bundle, batch: Batch, log: LogState) -> Bundle:
    """``bundle`` with one just-logged ``batch`` applied; ``log`` is the log that now holds it."""
    return _apply(bundle, list(batch.changes), log)


def _apply(bundle: Bundle, changes: Sequence[Change], log: LogState) -> Bundle:
    n = len(bundle)
    row_of = dict(bundle.row_of)
    tombstones: list[int] = []
    records: list[dict[str, object]] = []
    vectors: list[np.ndarray] = []
    popularity = bundle.popularity
    for change in changes:
        old = row_of.pop(change.id, None)
        if old is not None:
            tombstones.append(old)
        if isinstance(change, Delete):
            continue
        assert isinstance(change, Upsert)
        record = dict(change.record)
        if "popularity" in bundle.items and record.get("popularity") is None:
            # A replaced item keeps the popularity the build counted; a new one starts at 0.
            if old is None or popularity is None:
                record["popularity"] = 0
            elif old < n:
                record["popularity"] = popularity[old].item()
            else:
                record["popularity"] = records[old - n]["popularity"]
        row_of[change.id] = n + len(records)
        records.append(record)
        vectors.append(change.vector)

    deleted = np.zeros(n + len(records), dtype=bool)
    if bundle.deleted is not None:
        deleted[:n] = bundle.deleted
    deleted[tombstones] = True

    items = bundle.items
    all_vectors = bundle.vectors
    buffer = bundle.buffer
    if records:
        added = pd.DataFrame.from_records(records, columns=list(items.columns))
        items = pd.concat([items, _like(added, items)], ignore_index=True)
        if buffer is None or buffer.size != n:  # first update, or a snapshot that was branched
            buffer = RowBuffer(np.asarray(bundle.vectors, dtype=np.float32))
        all_vectors = buffer.append(np.stack(vectors).astype(np.float32, copy=False))
    return Bundle(
        bundle.path,
        bundle.manifest,
        bundle.index,
        all_vectors,
        items,
        deleted=deleted if deleted.any() else None,
        row_of=row_of,
        log=log,
        buffer=buffer,
        extras=bundle.extras,  # CF vectors and BM25 cover the indexed rows: shared as loaded
    )


def _like(added: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """``added`` with the item table's column kinds, so numbers stay numbers after concat."""
    for column in added.columns:
        if pd.api.types.is_numeric_dtype(items[column]):
            added[column] = pd.to_numeric(added[column])
        elif items[column].dtype == object:
            added[column] = added[column].astype(object)
    return added
