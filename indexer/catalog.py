"""A catalogue file → validated items: ids, composed texts and metadata.

The text of each item comes from a template over its fields, e.g.
``"{title}. Genres: {genres}.[ Tags: {tags}.]"``. A part in square brackets is optional: it is
dropped when every field inside it is empty, so items without tags read "Heat (1995). Genres:
Action, Crime." and not "... Tags: .". List values are joined with ", ".

Extra text may be joined by id from other files (MovieLens tags): see :class:`JoinSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from engine.bundle import RESERVED_COLUMNS
from engine.errors import CatalogError
from engine.tables import TableFormat, ids_as_strings, read_table, require_columns
from engine.templates import (
    default_template,
    render,
    render_value,
    split_list,
    template_fields,
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ -]*$")


@dataclass(frozen=True)
class JoinSpec:
    """Text joined from another file: all ``column`` values whose ``key`` equals the item id.

    The values become the field ``name`` (a list, most frequent first, case-insensitively
    deduplicated, at most ``max_values``), usable in the template and as metadata.
    """

    name: str
    path: Path
    key: str
    column: str
    max_values: int = 20
    table_format: TableFormat = field(default_factory=TableFormat)

    @classmethod
    def parse(cls, text: str) -> JoinSpec:
        """Parse ``NAME=PATH:KEY:COLUMN`` (the CLI's ``--join``)."""
        try:
            name, rest = text.split("=", 1)
            path, key, column = rest.rsplit(":", 2)
        except ValueError as exc:
            raise CatalogError(
                f"--join {text!r} must look like NAME=PATH:KEY:COLUMN", field="join"
            ) from exc
        if not _NAME.match(name):
            raise CatalogError(f"--join name {name!r} is not a valid field name", field="join")
        return cls(name=name.strip(), path=Path(path), key=key.strip(), column=column.strip())


@dataclass(frozen=True)
class CatalogSpec:
    """Where the catalogue is and how to read it."""

    path: Path
    id_column: str = "id"
    text_template: str | None = None
    # None: every column but the id (and reserved names) is metadata.
    metadata_columns: tuple[str, ...] | None = None
    # Columns holding several values in one string, with their separator (MovieLens genres: "|").
    list_columns: Mapping[str, str] = field(default_factory=dict)
    joins: tuple[JoinSpec, ...] = ()
    table_format: TableFormat = field(default_factory=TableFormat)


@dataclass(frozen=True)
class Catalog:
    """Validated items. ``table`` has columns id, text and the metadata columns."""

    table: pd.DataFrame
    text_template: str
    metadata_columns: tuple[str, ...]
    list_columns: tuple[str, ...]

    @property
    def ids(self) -> list[str]:
        return self.table["id"].tolist()

    @property
    def texts(self) -> list[str]:
        return self.table["text"].tolist()

    def __len__(self) -> int:
        return len(self.table)


def _aggregate_join(spec: JoinSpec) -> dict[str, list[str]]:
    frame = read_table(spec.path, spec.table_format, string_columns=[spec.key])
    require_columns(frame, [spec.key, spec.column], f"joined file {spec.path}", "join")
    keys = ids_as_strings(frame[spec.key])
    values = frame[spec.column].astype("string").str.strip()
    counts: dict[str, dict[str, tuple[int, int, str]]] = {}
    for order, (key, value) in enumerate(zip(keys, values, strict=True)):
        if key is None or value is pd.NA or not value:
            continue
        slot = counts.setdefault(key, {})
        folded = value.casefold()
        count, first, shown = slot.get(folded, (0, order, value))
        slot[folded] = (count + 1, first, shown)
    return {
        key: [
            shown
            for _, _, shown in sorted(((-c, first, shown) for c, first, shown in slot.values()))[
                : spec.max_values
            ]
        ]
        for key, slot in counts.items()
    }


def load_catalog(spec: CatalogSpec) -> Catalog:
    """Read, join, compose and validate a catalogue; raise :class:`CatalogError` on bad input."""
    frame = read_table(spec.path, spec.table_format, string_columns=[spec.id_column])
    if frame.empty:
        raise CatalogError(f"catalogue {spec.path} has no rows", field="path")
    require_columns(frame, [spec.id_column], f"catalogue {spec.path}", "id_column")
    require_columns(frame, list(spec.list_columns), f"catalogue {spec.path}", "list_column")

    ids = ids_as_strings(frame[spec.id_column])
    missing = ids.isna()
    if missing.any():
        rows = [int(i) + 1 for i in missing.to_numpy().nonzero()[0][:5]]
        raise CatalogError(
            f"catalogue {spec.path}: {int(missing.sum())} rows have no {spec.id_column!r} "
            f"(data rows {rows})",
            field="id_column",
        )
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise CatalogError(
            f"catalogue {spec.path}: {len(duplicated)} duplicate ids in {spec.id_column!r}, "
            f"e.g. {duplicated[:5]}",
            field="id_column",
        )

    data = frame.drop(columns=[spec.id_column])
    for column, sep in spec.list_columns.items():
        data[column] = data[column].map(lambda v, s=sep: split_list(v, s)).astype(object)
    for join in spec.joins:
        if join.name in data.columns or join.name == spec.id_column:
            raise CatalogError(
                f"--join name {join.name!r} clashes with a catalogue column", field="join"
            )
        joined = _aggregate_join(join)
        data[join.name] = [joined.get(item_id, []) for item_id in ids]

    join_names = tuple(j.name for j in spec.joins)
    list_columns = tuple(spec.list_columns) + join_names
    available = [str(c) for c in data.columns]
    if spec.metadata_columns is None:
        metadata = tuple(c for c in available if c not in RESERVED_COLUMNS and c not in join_names)
    else:
        metadata = tuple(spec.metadata_columns)
        for column in metadata:
            if column in RESERVED_COLUMNS:
                raise CatalogError(
                    f"metadata column {column!r} uses a reserved name ({', '.join(RESERVED_COLUMNS)})",
                    field="metadata",
                )
        require_columns(data, list(metadata), f"catalogue {spec.path}", "metadata")

    template = spec.text_template or default_template(
        [c for c in available if c not in RESERVED_COLUMNS or c == "text"]
    )
    for name in template_fields(template):
        if name not in data.columns:
            raise CatalogError(
                f"text template refers to {{{name}}}, which is neither a catalogue column nor a "
                f"joined field (columns: {', '.join(available[:20])})",
                field="text",
            )

    records: list[dict[str, Any]] = data.to_dict("records")  # type: ignore[assignment]
    texts = [render(template, record) for record in records]
    fields = template_fields(template)
    # An item whose every field is empty would be embedded from the template's literals alone.
    empty = [
        item_id
        for item_id, record in zip(ids, records, strict=True)
        if not any(render_value(record.get(name)) for name in fields)
    ]
    if empty:
        raise CatalogError(
            f"catalogue {spec.path}: {len(empty)} items have empty text after composing "
            f"{template!r}, e.g. ids {empty[:5]}",
            field="text",
        )

    table = pd.DataFrame({"id": ids.astype(str).to_numpy(), "text": texts})
    for column in metadata:
        table[column] = data[column].to_numpy()
    return Catalog(
        table=table,
        text_template=template,
        metadata_columns=metadata,
        list_columns=tuple(c for c in list_columns if c in metadata),
    )
