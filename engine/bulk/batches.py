"""A chunk of users with their histories, flattened CSR-style, and the operations on it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from engine.errors import CatalogError
from engine.usermodel import HistoryEvent


@dataclass
class UserBatch:
    """Users with their histories flattened CSR-style: user ``u`` owns ``offsets[u]:offsets[u+1]``.

    ``items`` is an Arrow string array ``(e,)`` of item ids (no Python object per event),
    ``weights`` ``float64 (e,)``, ``timestamps`` ``float64 (e,)`` with NaN for "no time".
    """

    user_ids: list[str]
    offsets: np.ndarray
    items: pa.Array
    weights: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)

    def history(self, u: int) -> list[HistoryEvent]:
        """User ``u``'s history as the online API takes it."""
        s, e = int(self.offsets[u]), int(self.offsets[u + 1])
        items = self.items.slice(s, e - s).to_pylist()
        return [
            HistoryEvent(str(i), float(w), None if math.isnan(t) else float(t))
            for i, w, t in zip(items, self.weights[s:e], self.timestamps[s:e], strict=True)
        ]


def concat_batches(parts: list[UserBatch]) -> UserBatch:
    """One batch of ``parts`` in order."""
    if len(parts) == 1:
        return parts[0]
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for part in parts:
        offsets.append(part.offsets[1:] + base)
        base += int(part.offsets[-1])
    return UserBatch(
        [u for p in parts for u in p.user_ids],
        np.concatenate(offsets),
        pa.concat_arrays([p.items for p in parts]),
        np.concatenate([p.weights for p in parts]),
        np.concatenate([p.timestamps for p in parts]),
    )


def slice_batch(batch: UserBatch, start: int, stop: int) -> UserBatch:
    s, e = int(batch.offsets[start]), int(batch.offsets[stop])
    return UserBatch(
        batch.user_ids[start:stop],
        batch.offsets[start : stop + 1] - s,
        batch.items.slice(s, e - s),
        batch.weights[s:e],
        batch.timestamps[s:e],
    )


def validated(batch: UserBatch) -> UserBatch:
    """Missing weights weigh 1 (as in the interactions reader); infinities name their user."""
    batch.weights = np.where(np.isnan(batch.weights), 1.0, batch.weights)
    bad = np.flatnonzero(np.isinf(batch.weights) | np.isinf(batch.timestamps))
    if bad.size:
        user = batch.user_ids[int(np.searchsorted(batch.offsets, bad[0], side="right") - 1)]
        raise CatalogError(
            f"users: user {user!r} has an infinite weight or timestamp", field="users"
        )
    missing = np.flatnonzero(batch.items.is_null().to_numpy(zero_copy_only=False))
    if missing.size:
        user = batch.user_ids[int(np.searchsorted(batch.offsets, missing[0], side="right") - 1)]
        raise CatalogError(
            f"users: user {user!r} has a history entry without an item id", field="users"
        )
    return batch
