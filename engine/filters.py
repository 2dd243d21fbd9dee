"""Metadata filters, evaluated to a boolean mask over the bundle's rows.

The mask becomes a FAISS ID selector (see :mod:`engine.ann`), so filtering happens inside the
search instead of discarding results afterwards. Conditions in a list are ANDed.

A condition is one of:

* ``eq``: the field equals the value (for a list column: the list contains it);
* ``any``: the field equals one of the values (list column: shares at least one value);
* a range: any of ``gt``, ``gte``, ``lt``, ``lte`` on a numeric field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.errors import InvalidArgument

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Filter:
    """One condition on one metadata field."""

    field: str
    eq: Scalar | None = None
    any: tuple[Scalar, ...] | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not self.field:
            raise InvalidArgument("filter field must be a non-empty string", field="filters")
        values = [self.eq] if self.eq is not None else list(self.any or ())
        if self.any is not None and not isinstance(self.any, tuple):
            raise InvalidArgument(f"filter on {self.field!r}: any must be a list", field="filters")
        if any(not isinstance(v, (str, int, float, bool)) for v in values):
            raise InvalidArgument(
                f"filter on {self.field!r}: values must be strings, numbers or booleans",
                field="filters",
            )
        bounds = (self.gt, self.gte, self.lt, self.lte)
        if any(
            b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)))
            for b in bounds
        ):
            raise InvalidArgument(
                f"filter on {self.field!r}: range bounds must be numbers", field="filters"
            )
        kinds = (self.eq is not None) + (self.any is not None) + any(b is not None for b in bounds)
        if kinds != 1:
            raise InvalidArgument(
                f"filter on {self.field!r} must give exactly one of eq, any, or a range "
                "(gt/gte/lt/lte)",
                field="filters",
            )
        for bound in bounds:
            if bound is not None and not math.isfinite(bound):
                raise InvalidArgument(
                    f"filter on {self.field!r} has a non-finite bound", field="filters"
                )

    @property
    def is_range(self) -> bool:
        return self.eq is None and self.any is None


class FilterIndex:
    """Per-field lookup structures over an item table, built lazily and reused across queries."""

    def __init__(self, items: pd.DataFrame, fields: Sequence[str], list_fields: Sequence[str]):
        self._items = items
        self._fields = set(fields)
        self._list_fields = set(list_fields)
        self._scalar_cache: dict[str, np.ndarray] = {}
        self._postings: dict[str, dict[object, np.ndarray]] = {}
        self._n = len(items)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self._fields)

    def mask(self, filters: Sequence[Filter]) -> np.ndarray | None:
        """``bool (n,)`` rows passing every filter, or None when there are no filters."""
        if not filters:
            return None
        mask = np.ones(self._n, dtype=bool)
        for position, condition in enumerate(filters):
            if condition.field not in self._fields:
                known = ", ".join(sorted(self._fields)) or "none"
                raise InvalidArgument(
                    f"unknown filter field {condition.field!r} (filterable fields: {known})",
                    field=f"filters[{position}].field",
                )
            mask &= self._condition_mask(condition, position)
        return mask

    def _condition_mask(self, condition: Filter, position: int) -> np.ndarray:
        name = condition.field
        if name in self._list_fields:
            if condition.is_range:
                raise InvalidArgument(
                    f"range filter on list field {name!r} is not supported",
                    field=f"filters[{position}]",
                )
            wanted = [condition.eq] if condition.eq is not None else list(condition.any or ())
            return self._list_mask(name, wanted)
        column = self._column(name)
        numeric = column.dtype.kind in "iufb"
        if condition.is_range:
            if not numeric:
                raise InvalidArgument(
                    f"range filter on non-numeric field {name!r}", field=f"filters[{position}]"
                )
            values = column.astype(np.float64)
            out = ~np.isnan(values)
            if condition.gt is not None:
                out &= values > condition.gt
            if condition.gte is not None:
                out &= values >= condition.gte
            if condition.lt is not None:
                out &= values < condition.lt
            if condition.lte is not None:
                out &= values <= condition.lte
            return out
        wanted = [condition.eq] if condition.eq is not None else list(condition.any or ())
        coerced = [self._coerce(v, numeric, name, position) for v in wanted]
        return np.isin(column, np.array(coerced, dtype=np.float64 if numeric else object))

    @staticmethod
    def _coerce(value: Scalar, numeric: bool, name: str, position: int) -> object:
        if not numeric:
            return str(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError as exc:
                raise InvalidArgument(
                    f"field {name!r} is numeric; {value!r} is not a number",
                    field=f"filters[{position}]",
                ) from exc
        return value

    def _column(self, name: str) -> np.ndarray:
        if name not in self._scalar_cache:
            series = self._items[name]
            if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
                self._scalar_cache[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                self._scalar_cache[name] = series.astype("string").fillna("").to_numpy(dtype=object)
        return self._scalar_cache[name]

    def _list_mask(self, name: str, wanted: Sequence[Scalar]) -> np.ndarray:
        if name not in self._postings:
            rows_of: dict[object, list[int]] = {}
            for row, values in enumerate(self._items[name].tolist()):
                if values is None or (isinstance(values, float) and math.isnan(values)):
                    continue
                for value in values:
                    rows_of.setdefault(str(value), []).append(row)
            self._postings[name] = {
                value: np.asarray(rows, dtype=np.int64) for value, rows in rows_of.items()
            }
        postings = self._postings[name]
        out = np.zeros(self._n, dtype=bool)
        for value in wanted:
            rows = postings.get(str(value))
            if rows is not None:
                out[rows] = True
        return out
