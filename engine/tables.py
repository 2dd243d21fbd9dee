"""Reading tabular files (CSV/TSV, JSONL, Parquet) into DataFrames with one clear error on failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.errors import CatalogError

FORMATS = ("csv", "jsonl", "parquet")
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".zst", ".xz", ".zip"}


@dataclass(frozen=True)
class TableFormat:
    """How to parse a file: ``format`` is inferred from the suffix when None."""

    format: str | None = None
    delimiter: str | None = None
    encoding: str = "utf-8"


def _known_suffix(path: Path) -> bool:
    try:
        infer_format(path)
    except CatalogError:
        return False
    return True


def infer_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSION_SUFFIXES]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in (".csv", ".tsv", ".psv", ".txt", ".dat"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise CatalogError(
        f"cannot tell the format of {path} from its name; pass --format csv|jsonl|parquet",
        field="format",
    )


def read_table(
    path: str | Path, fmt: TableFormat = TableFormat(), *, string_columns: Sequence[str] = ()
) -> pd.DataFrame:
    """Read ``path`` into a DataFrame. ``string_columns`` are read as text (ids keep leading zeros)."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"cannot read {path}: no such file", field="path")
    # A delimiter given for a file with an unusual suffix says it is delimited text.
    kind = fmt.format or (
        "csv" if fmt.delimiter and not _known_suffix(path) else infer_format(path)
    )
    if kind not in FORMATS:
        raise CatalogError(
            f"unknown format {kind!r} (use one of {', '.join(FORMATS)})", field="format"
        )
    try:
        if kind == "csv":
            sep = fmt.delimiter
            if sep is None:
                sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
            frame = pd.read_csv(
                path,
                sep=sep,
                encoding=fmt.encoding,
                dtype={c: str for c in string_columns},
                engine="python" if len(sep) > 1 else "c",
                skipinitialspace=False,
            )
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, encoding=fmt.encoding)
        else:
            frame = pd.read_parquet(path)
    except CatalogError:
        raise
    except (UnicodeDecodeError, LookupError) as exc:
        raise CatalogError(
            f"cannot read {path} with encoding {fmt.encoding!r}: {exc}; pass --encoding",
            field="encoding",
        ) from exc
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(f"cannot read {path} as {kind}: {first_line}", field="path") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str, option: str) -> None:
    """Raise a :class:`CatalogError` naming the first column ``frame`` lacks."""
    for column in columns:
        if column not in frame.columns:
            listed = ", ".join(map(str, frame.columns[:20]))
            raise CatalogError(
                f"{what} has no column {column!r} (its columns: {listed}); set {option}",
                field=option,
            )


def ids_as_strings(series: pd.Series) -> pd.Series:
    """Item or user ids as stripped strings; integral floats lose their ``.0``."""

    def one(value: object) -> str | None:
        if value is None or (isinstance(value, float) and value != value):
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        text = str(value).strip()
        return text or None

    return series.map(one).astype(object)
