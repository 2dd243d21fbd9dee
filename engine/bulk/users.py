"""Reading users for bulk retrieval, a chunk at a time, from Parquet, CSV or JSONL.

Two layouts:

* ``wide``: one row per user; the history column holds a list of item ids, a list of
  ``{item_id, weight, timestamp}`` objects (Parquet structs or JSON objects), or, in a CSV, that
  list as JSON text.
* ``long``: one row per interaction ``(user, item[, weight, timestamp])``, grouped into users on
  the fly. A user's rows must be contiguous (a file sorted or grouped by user); a user met again
  after others is an error, never a silently split history. Telling that needs one hash per
  user seen (~70 MB per million users), the only state kept across chunks.

Memory is bounded by the chunk size: the file is read in blocks of at most :data:`READ_ROWS` rows
(of at most a chunk's users in the wide layout).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from engine.bulk.batches import UserBatch, concat_batches, slice_batch, validated
from engine.bulk.readers import id_array, id_strings, numbers, read_blocks
from engine.errors import CatalogError
from engine.tables import TableFormat

READ_ROWS = 65_536
Layout = Literal["wide", "long"]


@dataclass(frozen=True)
class UsersSpec:
    """Where the users are and how their columns are called."""

    path: Path
    layout: Layout = "wide"
    user_column: str = "user_id"
    history_column: str = "history"  # wide
    item_column: str = "item_id"  # long
    weight_column: str | None = None  # long; missing weights are 1
    timestamp_column: str | None = None  # long; Unix seconds
    table_format: TableFormat = field(default_factory=TableFormat)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this input, for ``--resume`` to refuse a different one."""
        stat = self.path.stat()
        return {
            "path": str(self.path.resolve()),
            "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "layout": self.layout,
            "columns": [
                self.user_column,
                self.history_column,
                self.item_column,
                self.weight_column,
                self.timestamp_column,
            ],
        }


# -- wide layout ------------------------------------------------------------------------------------


def _wide_block(table: pa.Table, spec: UsersSpec) -> UserBatch:
    users = id_strings(table.column(spec.user_column))
    history = table.column(spec.history_column).combine_chunks()
    if pa.types.is_string(history.type) or pa.types.is_large_string(history.type):
        history = _parse_json_lists(history, users, spec)
    if not (pa.types.is_list(history.type) or pa.types.is_large_list(history.type)):
        raise CatalogError(
            f"users: column {spec.history_column!r} must hold lists of item ids or of "
            f"{{item_id, weight, timestamp}} objects, not {history.type}",
            field="users",
        )
    history = history.fill_null([])
    offsets = np.asarray(history.offsets.to_numpy(), dtype=np.int64)
    offsets = offsets - offsets[0]
    values = history.flatten()
    n = len(values)
    if pa.types.is_struct(values.type):
        names = [values.type.field(i).name for i in range(values.type.num_fields)]
        if "item_id" not in names:
            raise CatalogError(
                f"users: history objects need an item_id (they have {', '.join(names)})",
                field="users",
            )
        items = id_array(values.field("item_id"))
        weights = numbers(values.field("weight") if "weight" in names else None, n, 1.0)
        times = numbers(values.field("timestamp") if "timestamp" in names else None, n, math.nan)
    else:
        items, weights, times = id_array(values), np.ones(n), np.full(n, math.nan)
    _check_users(users, spec)
    return validated(UserBatch(list(users), offsets, items, weights, times))


def _parse_json_lists(column: pa.Array, users: np.ndarray, spec: UsersSpec) -> pa.Array:
    rows: list[list[dict[str, Any]]] = []
    for user, text in zip(users, column.to_pylist(), strict=True):
        try:
            value = json.loads(text) if text else []
        except json.JSONDecodeError as exc:
            raise CatalogError(
                f"users: history of user {user!r} is not a JSON list ({exc.msg})", field="users"
            ) from exc
        if not isinstance(value, list):
            raise CatalogError(f"users: history of user {user!r} is not a JSON list", field="users")
        rows.append([e if isinstance(e, dict) else {"item_id": e} for e in value])
    out = []
    for events in rows:
        out.append(
            [
                {
                    "item_id": None if e.get("item_id") is None else str(e.get("item_id")),
                    "weight": e.get("weight", 1.0),
                    "timestamp": e.get("timestamp"),
                }
                for e in events
            ]
        )
    kind = pa.list_(
        pa.struct([("item_id", pa.string()), ("weight", pa.float64()), ("timestamp", pa.float64())])
    )
    try:
        return pa.array(out, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CatalogError(f"users: a history weight or timestamp is not a number ({exc})") from exc


def _check_users(users: np.ndarray, spec: UsersSpec) -> None:
    if any(u is None for u in users):
        raise CatalogError(f"users: a row of {spec.path} has no {spec.user_column}", field="users")


# -- long layout ------------------------------------------------------------------------------------


class _Grouper:
    """Contiguous runs of one user → users; the last run is held back until the next block."""

    def __init__(self, spec: UsersSpec) -> None:
        self.spec = spec
        self.seen: set[int] = set()
        self.pending: UserBatch | None = None

    def feed(self, table: pa.Table | None) -> UserBatch | None:
        """Users completed by ``table`` (None: end of file, everything pending)."""
        if table is None:
            block, self.pending = self.pending, None
            if block is not None:
                self._once(block.user_ids[0])
            return block
        spec = self.spec
        n = table.num_rows
        users = id_strings(table.column(spec.user_column))
        items = id_array(table.column(spec.item_column))
        weight = table.column(spec.weight_column) if spec.weight_column else None
        stamp = table.column(spec.timestamp_column) if spec.timestamp_column else None
        _check_users(users, spec)
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        offsets = np.r_[starts, n].astype(np.int64)
        block = validated(
            UserBatch(
                list(users[starts]),
                offsets,
                items,
                numbers(weight, n, 1.0),
                numbers(stamp, n, math.nan),
            )
        )
        if self.pending is not None:
            joined = concat_batches([self.pending, block])
            if block.user_ids[0] == self.pending.user_ids[0]:
                # The held-back user goes on in this block: one run across the boundary.
                joined = UserBatch(
                    joined.user_ids[1:],
                    np.delete(joined.offsets, 1),
                    joined.items,
                    joined.weights,
                    joined.timestamps,
                )
            block = joined
        # The last user may go on in the next block: hold it back.
        complete = slice_batch(block, 0, len(block) - 1)
        self.pending = slice_batch(block, len(block) - 1, len(block))
        for user in complete.user_ids:
            self._once(user)
        return complete

    def _once(self, user: str) -> None:
        key = hash(user)
        if key in self.seen:
            raise CatalogError(
                f"users: the interactions of user {user!r} are not contiguous in "
                f"{self.spec.path}; sort or group the file by {self.spec.user_column}",
                field="users",
            )
        self.seen.add(key)


# -- chunks -----------------------------------------------------------------------------------------


def iter_users(spec: UsersSpec, chunk_size: int) -> Iterator[UserBatch]:
    """Batches of exactly ``chunk_size`` users (the last may be smaller), in file order."""
    if spec.layout == "wide":
        columns = [spec.user_column, spec.history_column]
        blocks: Iterator[UserBatch | None] = (
            _wide_block(t, spec)
            for t in read_blocks(
                # A row is a whole history: read no more users at once than a chunk holds.
                spec.path,
                spec.table_format,
                columns,
                [spec.user_column],
                (spec.history_column,),
                min(READ_ROWS, chunk_size),
            )
        )
    else:
        columns = [spec.user_column, spec.item_column]
        columns += [c for c in (spec.weight_column, spec.timestamp_column) if c]
        grouper = _Grouper(spec)
        tables = read_blocks(
            spec.path,
            spec.table_format,
            columns,
            [spec.user_column, spec.item_column],
            (),
            READ_ROWS,
        )
        blocks = _long_blocks(grouper, tables)
    held: list[UserBatch] = []
    count = 0
    for block in blocks:
        if block is None or not len(block):
            continue
        start = 0
        while start < len(block):
            take = min(chunk_size - count, len(block) - start)
            held.append(slice_batch(block, start, start + take))
            count += take
            start += take
            if count == chunk_size:
                yield concat_batches(held)
                held, count = [], 0
    if held:
        yield concat_batches(held)


def _long_blocks(grouper: _Grouper, tables: Iterator[pa.Table]) -> Iterator[UserBatch | None]:
    for table in tables:
        if table.num_rows:
            yield grouper.feed(table)
    yield grouper.feed(None)
