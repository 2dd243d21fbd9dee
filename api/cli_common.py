"""Pieces shared by the ``vecrec`` subcommands: option groups, parsers of option values, output."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from engine import InvalidArgument
from engine.errors import BundleNotFound
from engine.interactions import InteractionsSpec
from engine.manifest import Manifest
from engine.tables import TableFormat

EXIT_ERROR = 1


def resolve_index(value: str | None, indexes_dir: Path) -> Path:
    """An index given as a path, or as a name under ``indexes_dir``."""
    candidates = [Path(value)] if value else []
    if value and "/" not in value:
        candidates.append(indexes_dir / value)
    if not value:
        candidates.append(Path(os.environ.get("VECREC_INDEX", indexes_dir / "movielens")))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise BundleNotFound(f"no index at {candidates[0]}", field="index")


# -- output ----------------------------------------------------------------------------------------


def describe_manifest(manifest: Manifest, path: Path) -> str:
    lines = [
        f"index      {manifest.name}  version {manifest.version}",
        f"path       {path}",
        f"created    {manifest.created_at}  by vecrec {manifest.vecrec_version}",
        f"items      {manifest.item_count}",
        f"model      {manifest.model.spec}  ({manifest.model.dimension}-d, "
        f"max {manifest.model.max_seq_length} tokens)",
        f"index      {manifest.index.factory}  ({manifest.index.chosen_by}), "
        f"search params {manifest.index.search_params or '-'}",
        f"text       {manifest.text_template}",
        f"metadata   {', '.join(manifest.metadata_columns) or '-'}"
        + (" + popularity" if manifest.has_popularity else ""),
    ]
    for name, info in sorted(manifest.files.items()):
        lines.append(f"file       {name:<14} {info.bytes:>12,d} B  sha256 {info.sha256[:16]}…")
    return "\n".join(lines)


# -- parser ----------------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, like every other failure (argparse prints the whole usage by default).
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def add_table_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """--format/--delimiter/--encoding (optionally prefixed, e.g. --interactions-delimiter)."""
    dash = f"--{prefix}-" if prefix else "--"
    what = f"{prefix} file" if prefix else "catalogue"
    parser.add_argument(
        f"{dash}format",
        choices=["csv", "jsonl", "parquet"],
        default=None,
        help=f"{what} format (default: from the file name)",
    )
    parser.add_argument(
        f"{dash}delimiter", default=None, help=f"{what} CSV separator (default: , or tab for .tsv)"
    )
    parser.add_argument(
        f"{dash}encoding", default="utf-8", help=f"{what} text encoding (default: utf-8)"
    )


def add_catalog_options(parser: argparse.ArgumentParser) -> None:
    """How to read a catalogue and compose each item's text."""
    parser.add_argument("--id-column", default="id", help="column holding item ids (default: id)")
    parser.add_argument(
        "--text",
        default=None,
        help='text template, e.g. "{title}. Genres: {genres}.[ Tags: {tags}.]"',
    )
    parser.add_argument(
        "--metadata",
        default=None,
        help="comma-separated metadata columns (default: all but the id)",
    )
    parser.add_argument(
        "--list-column",
        action="append",
        default=[],
        metavar="COLUMN=SEP",
        help="split COLUMN on SEP into a list (repeatable)",
    )
    parser.add_argument(
        "--join",
        action="append",
        default=[],
        metavar="NAME=PATH:KEY:COLUMN",
        help="add field NAME from PATH's COLUMN, matched on KEY (repeatable)",
    )
    parser.add_argument(
        "--model",
        default="all-MiniLM-L6-v2",
        help="sentence-transformers model directory (default: bundled all-MiniLM-L6-v2)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch threads for embedding"
    )
    add_table_options(parser)


def catalog_spec(args: argparse.Namespace, path: str) -> Any:
    """The CatalogSpec the catalogue options describe."""
    from indexer.catalog import CatalogSpec, JoinSpec

    list_columns = {}
    for spec in args.list_column:
        column, sep, separator = spec.partition("=")
        if not sep or not separator:
            raise InvalidArgument(
                f"--list-column {spec!r} must look like COLUMN=SEPARATOR", field="list_column"
            )
        list_columns[column] = separator
    metadata = None
    if args.metadata is not None:
        metadata = tuple(c.strip() for c in args.metadata.split(",") if c.strip())
    return CatalogSpec(
        path=Path(path),
        id_column=args.id_column,
        text_template=args.text,
        metadata_columns=metadata,
        list_columns=list_columns,
        joins=tuple(JoinSpec.parse(j) for j in args.join),
        table_format=TableFormat(args.format, args.delimiter, args.encoding),
    )


def add_interactions_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Where interactions are and what their columns are called."""
    parser.add_argument(
        "--interactions",
        required=required,
        default=None,
        help="interactions file (csv/jsonl/parquet)",
    )
    parser.add_argument("--user-column", default="user_id")
    parser.add_argument("--item-column", default="item_id")
    parser.add_argument(
        "--rating-column",
        default=None,
        help="rating or weight column (default: every interaction weighs 1)",
    )
    parser.add_argument("--timestamp-column", default=None, help="Unix-seconds time column")
    add_table_options(parser, "interactions")


def interactions_spec(args: argparse.Namespace) -> InteractionsSpec | None:
    if not args.interactions:
        return None
    return InteractionsSpec(
        path=Path(args.interactions),
        user_column=args.user_column,
        item_column=args.item_column,
        weight_column=args.rating_column,
        timestamp_column=args.timestamp_column,
        table_format=TableFormat(
            args.interactions_format, args.interactions_delimiter, args.interactions_encoding
        ),
    )


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))
