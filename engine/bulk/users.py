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
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.errors import CatalogError
from engine.tables import TableFormat, infer_format
from engine.usermodel import HistoryEvent

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


def _batch(parts: list[UserBatch]) -> UserBatch:
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


def _slice(batch: UserBatch, start: int, stop: int) -> UserBatch:
    s, e = int(batch.offsets[start]), int(batch.offsets[stop])
    return UserBatch(
        batch.user_ids[start:stop],
        batch.offsets[start : stop + 1] - s,
        batch.items.slice(s, e - s),
        batch.weights[s:e],
        batch.timestamps[s:e],
    )


# -- reading blocks ---------------------------------------------------------------------------------


def _blocks(
    spec: UsersSpec,
    columns: list[str],
    strings: list[str],
    lists: tuple[str, ...] = (),
    rows: int = READ_ROWS,
) -> Iterator[pa.Table]:
    """The file as Arrow tables of about :data:`READ_ROWS` rows, ``strings`` columns as text.

    A JSONL file's ``lists`` columns come as JSON text: their cells may mix ids and objects.
    """
    path, fmt = spec.path, spec.table_format
    if not path.is_file():
        raise CatalogError(f"cannot read {path}: no such file", field="users")
    kind = fmt.format or infer_format(path)
    try:
        if kind == "parquet":
            parquet = pq.ParquetFile(path)
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            _require(missing, parquet.schema_arrow.names, spec)
            for record in parquet.iter_batches(batch_size=rows, columns=columns):
                yield pa.Table.from_batches([record])
        elif kind == "csv":
            sep = fmt.delimiter or ("\t" if ".tsv" in [s.lower() for s in path.suffixes] else ",")
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(encoding=fmt.encoding, block_size=1 << 22),
                parse_options=pacsv.ParseOptions(delimiter=sep),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in strings}
                ),
            )
            _require(
                [c for c in columns if c not in reader.schema.names], reader.schema.names, spec
            )
            for record in reader:
                yield pa.Table.from_batches([record]).select(columns)
        else:
            for frame in pd.read_json(
                path, lines=True, dtype=False, chunksize=rows, encoding=fmt.encoding
            ):
                _require([c for c in columns if c not in frame.columns], list(frame.columns), spec)
                frame = frame[columns].copy()
                for column in lists:
                    frame[column] = [json.dumps(v) for v in frame[column]]
                for column in strings:
                    frame[column] = frame[column].map(lambda v: None if v is None else str(v))
                yield pa.Table.from_pandas(frame, preserve_index=False)
    except (CatalogError, KeyboardInterrupt):
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(
            f"cannot read users from {path} as {kind}: {first}", field="users"
        ) from exc


def _require(missing: list[str], present: list[str], spec: UsersSpec) -> None:
    if missing:
        raise CatalogError(
            f"users file {spec.path} has no column {missing[0]!r} (its columns: "
            f"{', '.join(present[:20])})",
            field="users",
        )


def _ids(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Ids as an Arrow string array; integral floats lose their ``.0`` (ids are strings)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False)
        return pa.array(
            [None if v != v else str(int(v)) if float(v).is_integer() else str(v) for v in values],
            type=pa.string(),
        )
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    return column


def _strings(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Ids as an ``object`` array of strings (user ids: one per user, not per event)."""
    return np.asarray(_ids(column).to_numpy(zero_copy_only=False), dtype=object)


def _numbers(column: pa.ChunkedArray | pa.Array | None, n: int, default: float) -> np.ndarray:
    if column is None:
        return np.full(n, default)
    try:
        values = pc_cast_float(column)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CatalogError(f"users: a weight or timestamp is not a number ({exc})") from exc
    return values


def pc_cast_float(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """``float64`` values with NaN for nulls."""
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


# -- wide layout ------------------------------------------------------------------------------------


def _wide_block(table: pa.Table, spec: UsersSpec) -> UserBatch:
    users = _strings(table.column(spec.user_column))
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
        items = _ids(values.field("item_id"))
        weights = _numbers(values.field("weight") if "weight" in names else None, n, 1.0)
        times = _numbers(values.field("timestamp") if "timestamp" in names else None, n, math.nan)
    else:
        items, weights, times = _ids(values), np.ones(n), np.full(n, math.nan)
    _check_users(users, spec)
    return _validated(UserBatch(list(users), offsets, items, weights, times))


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


def _validated(batch: UserBatch) -> UserBatch:
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
        users = _strings(table.column(spec.user_column))
        items = _ids(table.column(spec.item_column))
        weight = table.column(spec.weight_column) if spec.weight_column else None
        stamp = table.column(spec.timestamp_column) if spec.timestamp_column else None
        _check_users(users, spec)
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        offsets = np.r_[starts, n].astype(np.int64)
        block = _validated(
            UserBatch(
                list(users[starts]),
                offsets,
                items,
                _numbers(weight, n, 1.0),
                _numbers(stamp, n, math.nan),
            )
        )
        if self.pending is not None:
            joined = _batch([self.pending, block])
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
        complete = _slice(block, 0, len(block) - 1)
        self.pending = _slice(block, len(block) - 1, len(block))
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
            for t in _blocks(
                # A row is a whole history: read no more users at once than a chunk holds.
                spec,
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
        tables = _blocks(spec, columns, [spec.user_column, spec.item_column], rows=READ_ROWS)
        blocks = _long_blocks(grouper, tables)
    held: list[UserBatch] = []
    count = 0
    for block in blocks:
        if block is None or not len(block):
            continue
        start = 0
        while start < len(block):
            take = min(chunk_size - count, len(block) - start)
            held.append(_slice(block, start, start + take))
            count += take
            start += take
            if count == chunk_size:
                yield _batch(held)
                held, count = [], 0
    if held:
        yield _batch(held)


def _long_blocks(grouper: _Grouper, tables: Iterator[pa.Table]) -> Iterator[UserBatch | None]:
    for table in tables:
        if table.num_rows:
            yield grouper.feed(table)
    yield grouper.feed(None)
