"""Users files read in blocks of rows as Arrow tables: Parquet, CSV (streamed) and JSONL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.errors import CatalogError
from engine.tables import TableFormat, infer_format


def read_blocks(
    path: Path,
    fmt: TableFormat,
    columns: list[str],
    strings: list[str],
    lists: tuple[str, ...],
    rows: int,
) -> Iterator[pa.Table]:
    """The file as Arrow tables of about :data:`READ_ROWS` rows, ``strings`` columns as text.

    A JSONL file's ``lists`` columns come as JSON text: their cells may mix ids and objects.
    """
    if not path.is_file():
        raise CatalogError(f"cannot read {path}: no such file", field="users")
    kind = fmt.format or infer_format(path)
    try:
        if kind == "parquet":
            # No pre-buffering: its read cache keeps every row group read so far (memory grew
            # with the file, 1.1 GiB over 1M users), not just the current one.
            parquet = pq.ParquetFile(path, pre_buffer=False)
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            _require(missing, parquet.schema_arrow.names, path)
            # One thread: the job's own threads keep the cores busy (6.7 against 7.3 core-ms to
            # decode 1,024 users of 165 events, and no pool of Arrow's competing with them).
            for record in parquet.iter_batches(batch_size=rows, columns=columns, use_threads=False):
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
                [c for c in columns if c not in reader.schema.names], reader.schema.names, path
            )
            for record in reader:
                yield pa.Table.from_batches([record]).select(columns)
        else:
            for frame in pd.read_json(
                path, lines=True, dtype=False, chunksize=rows, encoding=fmt.encoding
            ):
                _require([c for c in columns if c not in frame.columns], list(frame.columns), path)
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


def _require(missing: list[str], present: list[str], path: Path) -> None:
    if missing:
        raise CatalogError(
            f"users file {path} has no column {missing[0]!r} (its columns: "
            f"{', '.join(present[:20])})",
            field="users",
        )


def id_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
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


def id_strings(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Ids as an ``object`` array of strings (user ids: one per user, not per event)."""
    return np.asarray(id_array(column).to_numpy(zero_copy_only=False), dtype=object)


def numbers(column: pa.ChunkedArray | pa.Array | None, n: int, default: float) -> np.ndarray:
    """``float64 (n,)`` values of a numeric column, NaN for nulls; ``default`` without a column."""
    if column is None:
        return np.full(n, default)
    try:
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CatalogError(
            f"users: a weight or timestamp is not a number ({exc})", field="users"
        ) from exc
    return np.asarray(values, dtype=np.float64)
