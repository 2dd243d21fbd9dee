"""Live changes to an index: item upserts and deletes, validated against the bundle's schema.

An upsert carries the item's full record (id, text, metadata, popularity) and its vector, so the
change can be replayed after a restart without the model. Records are normalised here, once, so
the in-memory table, the update log and a later compaction all hold the same values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.errors import InvalidArgument
from engine.manifest import Manifest
from engine.templates import render, render_value, split_list, template_fields

MAX_ID_CHARS = 512


@dataclass(frozen=True)
class Upsert:
    """Insert ``id`` or replace it. ``vector`` is ``float32 (d,)``, unit length."""

    id: str
    record: Mapping[str, Any]  # every item-table column: id, text, metadata[, popularity]
    vector: np.ndarray


@dataclass(frozen=True)
class Delete:
    id: str


Change = Upsert | Delete


@dataclass(frozen=True)
class ItemFields:
    """An upsert as a client sends it: metadata fields, and the text unless the template makes it.

    ``text`` overrides the bundle's text template; without it the text is rendered from
    ``fields`` exactly as the build rendered its catalogue.
    """

    id: str
    fields: Mapping[str, Any]
    text: str | None = None


def check_id(item_id: Any, field: str = "id") -> str:
    """A valid item id as a string (ids are strings everywhere)."""
    if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
        raise InvalidArgument(f"{field} must be a string or an integer", field=field)
    text = str(item_id)
    if not text.strip() or len(text) > MAX_ID_CHARS or any(ord(c) < 32 for c in text):
        raise InvalidArgument(
            f"{field} must be 1 to {MAX_ID_CHARS} printable characters", field=field
        )
    return text


class RecordSchema:
    """The item table's columns and kinds, to turn client fields into a table row."""

    def __init__(self, manifest: Manifest, items: pd.DataFrame) -> None:
        self.template = manifest.text_template
        self.metadata = tuple(manifest.metadata_columns)
        self.lists = frozenset(manifest.list_columns)
        self.has_popularity = manifest.has_popularity
        self.numeric = frozenset(
            str(c)
            for c in items.columns
            if c not in ("id", "text") and pd.api.types.is_numeric_dtype(items[c])
        )
        # Template fields that are not stored (a build may render from columns it drops).
        self.accepted = (
            set(self.metadata)
            | set(template_fields(self.template))
            | ({"popularity"} if self.has_popularity else set())
        )
        self.separators: dict[str, str] = dict(manifest.source.get("list_separators") or {})

    def record(self, item: ItemFields, where: str) -> dict[str, Any]:
        """The table row for ``item``; ``where`` prefixes field names in errors (``items[3]``)."""
        item_id = check_id(item.id, f"{where}.id" if where else "id")
        fields: dict[str, Any] = {}
        for name, value in item.fields.items():
            path = f"{where}.fields.{name}" if where else f"fields.{name}"
            if name not in self.accepted:
                known = ", ".join(sorted(self.accepted)) or "none"
                raise InvalidArgument(
                    f"unknown item field {name!r} (accepted: {known})", field=path
                )
            fields[name] = self._value(name, value, path)
        text = item.text
        if text is None:
            names = template_fields(self.template)
            if not any(render_value(fields.get(n)) for n in names):
                raise InvalidArgument(
                    f"the item has no text: give 'text' or at least one of the template's "
                    f"fields ({', '.join(names)})",
                    field=f"{where}.fields" if where else "fields",
                )
            text = render(self.template, fields)
        elif not isinstance(text, str) or not text.strip():
            raise InvalidArgument(
                "text must be non-empty", field=f"{where}.text" if where else "text"
            )
        record: dict[str, Any] = {"id": item_id, "text": " ".join(text.split())}
        for name in self.metadata:
            record[name] = fields.get(name, [] if name in self.lists else None)
        if self.has_popularity:
            record["popularity"] = fields.get("popularity")
        return record

    def _value(self, name: str, value: Any, path: str) -> Any:
        if name in self.lists:
            if value is None:
                return []
            if isinstance(value, str):
                sep = self.separators.get(name)
                return split_list(value, sep) if sep else [value.strip()] if value.strip() else []
            if isinstance(value, (list, tuple)) and all(
                isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
            ):
                return [str(v).strip() for v in value if str(v).strip()]
            raise InvalidArgument(f"{name!r} must be a list of strings", field=path)
        if value is None:
            return None
        if name in self.numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgument(f"{name!r} is numeric; {value!r} is not a number", field=path)
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidArgument(f"{name!r} must be a finite number", field=path)
            return value
        if isinstance(value, (dict, list, tuple)):
            raise InvalidArgument(f"{name!r} must be a single value", field=path)
        return str(value)
