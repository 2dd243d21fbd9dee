"""A request's ids resolved to catalogue rows, and the rows it may be answered with.

Every query path checks its ``k``, history, excluded ids and filters against the limits here,
and bulk retrieval builds its masks through the same code (``Recommender.allowed_rows``), so a
batch and a single request can never disagree on what is eligible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.bundle import Bundle
from engine.errors import InvalidArgument
from engine.filters import Filter, FilterIndex
from engine.recommender_config import RecommenderConfig
from engine.usermodel import HistoryEvent, validate_history


@dataclass(frozen=True)
class KnownHistory:
    """The history events whose items the bundle holds, as parallel lists, and the ids it does
    not hold (reported back, not an error: catalogues change under clients)."""

    rows: list[int]
    weights: list[float]
    times: list[float | None]
    unknown: list[str]


@dataclass(frozen=True, eq=False)
class RequestRows:
    """Row lookups and allowed-row masks over one bundle, within ``config``'s limits."""

    bundle: Bundle
    config: RecommenderConfig
    filter_index: FilterIndex

    @classmethod
    def of(cls, bundle: Bundle, config: RecommenderConfig) -> RequestRows:
        manifest = bundle.manifest
        filterable = list(manifest.metadata_columns) + (
            ["popularity"] if manifest.has_popularity else []
        )
        return cls(bundle, config, FilterIndex(bundle.items, filterable, manifest.list_columns))

    def check_k(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.config.max_k:
            raise InvalidArgument(f"k must be an integer from 1 to {self.config.max_k}", field="k")

    def history(self, history: Sequence[HistoryEvent]) -> KnownHistory:
        if len(history) > self.config.max_history:
            raise InvalidArgument(
                f"history has {len(history)} entries; the limit is {self.config.max_history}",
                field="history",
            )
        validate_history(history)
        known = KnownHistory([], [], [], [])
        for event in history:
            row = self.bundle.row_of.get(str(event.item_id))
            if row is None:
                known.unknown.append(str(event.item_id))
                continue
            known.rows.append(row)
            known.weights.append(event.weight)
            known.times.append(event.timestamp)
        return known

    def rows_of(self, ids: Iterable[str]) -> tuple[list[int], list[str]]:
        """The rows of the (excluded) ``ids`` the bundle holds, and the ids it does not."""
        ids = list(ids)
        if len(ids) > self.config.max_exclude:
            raise InvalidArgument(
                f"exclude has {len(ids)} ids; the limit is {self.config.max_exclude}",
                field="exclude",
            )
        rows, unknown = [], []
        for item_id in ids:
            row = self.bundle.row_of.get(str(item_id))
            if row is None:
                unknown.append(str(item_id))
            else:
                rows.append(row)
        return rows, unknown

    def allowed(self, filters: Sequence[Filter], excluded: list[int]) -> np.ndarray | None:
        """``bool (n,)``: rows passing ``filters``, alive and not ``excluded``; None: all."""
        if len(filters) > self.config.max_filters:
            raise InvalidArgument(
                f"{len(filters)} filters; the limit is {self.config.max_filters}", field="filters"
            )
        mask = self.filter_index.mask(filters)
        live = self.bundle.live
        if live is not None:  # tombstoned rows: deleted or replaced by live updates
            mask = live.copy() if mask is None else mask & live
        if excluded:
            if mask is None:
                mask = np.ones(len(self.bundle), dtype=bool)
            mask[excluded] = False
        return mask

    def eligible(self, allowed: np.ndarray | None) -> int:
        return len(self.bundle) if allowed is None else int(np.count_nonzero(allowed))
