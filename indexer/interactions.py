"""Interactions given at build time (user, item[, weight, timestamp]) → per-item popularity."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import CatalogError
from engine.tables import TableFormat, ids_as_strings, read_table, require_columns


@dataclass(frozen=True)
class InteractionsSpec:
    """Where interactions are and what their columns are called."""

    path: Path
    user_column: str = "user_id"
    item_column: str = "item_id"
    table_format: TableFormat = field(default_factory=TableFormat)


def load_interactions(spec: InteractionsSpec) -> pd.DataFrame:
    """A frame with string columns ``user`` and ``item``."""
    frame = read_table(
        spec.path, spec.table_format, string_columns=[spec.user_column, spec.item_column]
    )
    require_columns(
        frame, [spec.user_column, spec.item_column], f"interactions {spec.path}", "interactions"
    )
    out = pd.DataFrame(
        {
            "user": ids_as_strings(frame[spec.user_column]),
            "item": ids_as_strings(frame[spec.item_column]),
        }
    ).dropna()
    if out.empty:
        raise CatalogError(f"interactions {spec.path} hold no usable rows", field="interactions")
    return out


def popularity(interactions: pd.DataFrame, item_ids: list[str]) -> np.ndarray:
    """``float64 (n,)``: distinct users who interacted with each item, in ``item_ids`` order."""
    counts = interactions.drop_duplicates(["user", "item"]).groupby("item").size()
    return counts.reindex(item_ids, fill_value=0).to_numpy(dtype=np.float64)
