"""Interaction logs (user, item[, weight, timestamp]): reading them, and per-item popularity.

Used at build time (popularity for the fallback ranking) and by the offline evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import CatalogError
from engine.tables import TableFormat, ids_as_strings, read_table, require_columns


@dataclass(frozen=True)
class InteractionsSpec:
    """Where interactions are and what their columns are called.

    ``weight_column`` (a rating or strength) and ``timestamp_column`` (Unix seconds) are optional.
    """

    path: Path
    user_column: str = "user_id"
    item_column: str = "item_id"
    weight_column: str | None = None
    timestamp_column: str | None = None
    table_format: TableFormat = field(default_factory=TableFormat)


def load_interactions(spec: InteractionsSpec) -> pd.DataFrame:
    """A frame with string columns ``user`` and ``item`` and float ``weight`` and ``timestamp``.

    Missing weights are 1.0; missing timestamps are NaN. Rows without a user or item are dropped.
    """
    frame = read_table(
        spec.path, spec.table_format, string_columns=[spec.user_column, spec.item_column]
    )
    wanted = [spec.user_column, spec.item_column]
    wanted += [c for c in (spec.weight_column, spec.timestamp_column) if c]
    require_columns(frame, wanted, f"interactions {spec.path}", "interactions")
    out = pd.DataFrame(
        {
            "user": ids_as_strings(frame[spec.user_column]),
            "item": ids_as_strings(frame[spec.item_column]),
            "weight": _numbers(frame, spec.weight_column, 1.0, spec.path),
            "timestamp": _numbers(frame, spec.timestamp_column, np.nan, spec.path),
        }
    )
    out = out.dropna(subset=["user", "item"]).reset_index(drop=True)
    if out.empty:
        raise CatalogError(f"interactions {spec.path} hold no usable rows", field="interactions")
    return out


def _numbers(frame: pd.DataFrame, column: str | None, default: float, path: Path) -> pd.Series:
    if column is None:
        return pd.Series(default, index=frame.index, dtype=np.float64)
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CatalogError(
            f"interactions {path}: column {column!r} holds a non-number "
            f"({frame[column].iloc[row]!r}, data row {row + 1})",
            field="interactions",
        )
    if column is not None and not np.isfinite(values.dropna()).all():
        raise CatalogError(
            f"interactions {path}: column {column!r} holds infinities", field="interactions"
        )
    return values.astype(np.float64)


def popularity(interactions: pd.DataFrame, item_ids: list[str]) -> np.ndarray:
    """``float64 (n,)``: distinct users who interacted with each item, in ``item_ids`` order."""
    counts = interactions.drop_duplicates(["user", "item"]).groupby("item").size()
    return counts.reindex(item_ids, fill_value=0).to_numpy(dtype=np.float64)
