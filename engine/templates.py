"""Item text templates: ``"{title}. Genres: {genres}.[ Tags: {tags}.]"`` → one string.

A part in square brackets is optional: it is dropped when every field inside it is empty. List
values are joined with ", ". Builds (indexer) and live item updates (engine, api) render item
text with the same functions, so an item written later reads exactly as if it had been built.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import CatalogError

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")


def template_fields(template: str) -> list[str]:
    """The field names a template refers to, in order."""
    try:
        parsed = list(string.Formatter().parse(template.replace("[", "").replace("]", "")))
    except ValueError as exc:
        raise CatalogError(f"text template {template!r} is malformed: {exc}", field="text") from exc
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or spec or conversion:
            raise CatalogError(
                f"text template {template!r}: use plain {{field}} placeholders only", field="text"
            )
        names.append(name)
    return names


def render_value(value: Any) -> str:
    """One field value as template text ("" when missing)."""
    if value is None:
        return ""
    if isinstance(value, np.ndarray):  # Parquet list cells arrive as arrays
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value if v is not None and str(v).strip())
    if isinstance(value, float):
        if value != value:
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill ``template`` from ``values``, dropping optional ``[...]`` parts whose fields are empty."""
    rendered = {name: render_value(values.get(name)) for name in template_fields(template)}

    def optional(match: re.Match[str]) -> str:
        part = match.group(1)
        names = template_fields(part)
        if names and not any(rendered[n] for n in names):
            return ""
        return part.format_map(rendered)

    text = _OPTIONAL.sub(optional, template)
    return " ".join(text.format_map(rendered).split())


def default_template(columns: Sequence[str]) -> str:
    """``"col: {col}. "`` for each column: a neutral choice when none is given."""
    return " ".join(f"[{c}: {{{c}}}.]" for c in columns)


def split_list(value: Any, sep: str) -> list[str]:
    """A list cell from a list, an array or a ``sep``-separated string."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(sep) if part.strip()]
