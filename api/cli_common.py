"""Pieces shared by the ``vecrec`` subcommands: option groups, parsers of option values, output."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine import Filter, HistoryEvent, InvalidArgument, Results
from engine.errors import BundleNotFound
from engine.interactions import InteractionsSpec
from engine.manifest import Manifest
from engine.tables import TableFormat

EXIT_ERROR = 1
_FILTER = re.compile(r"^\s*([^<>=!]+?)\s*(>=|<=|>|<|=)\s*(.*?)\s*$")


def parse_filter(text: str) -> Filter:
    """``genres=Comedy``, ``genres=Comedy,Drama`` (any), ``popularity>=100``, or a JSON object."""
    if text.lstrip().startswith("{"):
        # The HTTP API's model validates it: one definition of a filter object.
        from pydantic import ValidationError

        from api.models import FilterSpec

        try:
            return FilterSpec.model_validate_json(text).to_filter()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "filter"
            raise InvalidArgument(
                f"--filter {text!r} is not a valid filter object: {where}: {first['msg']}",
                field="filter",
            ) from exc
    match = _FILTER.match(text)
    if not match:
        raise InvalidArgument(
            f"--filter {text!r} must look like FIELD=VALUE, FIELD=A,B or FIELD>=NUMBER",
            field="filter",
        )
    name, op, value = match.groups()
    if op == "=":
        values = [v.strip() for v in value.split(",") if v.strip()]
        if not values:
            raise InvalidArgument(f"--filter {text!r} has no value", field="filter")
        return Filter(name, eq=values[0]) if len(values) == 1 else Filter(name, any=tuple(values))
    try:
        number = float(value)
    except ValueError as exc:
        raise InvalidArgument(
            f"--filter {text!r}: {value!r} is not a number", field="filter"
        ) from exc
    key = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}[op]
    bound: dict[str, Any] = {key: number}
    return Filter(name, **bound)


def parse_history(text: str) -> list[HistoryEvent]:
    """``ID[:WEIGHT[@TIMESTAMP]]`` separated by commas: ``1:5,2:4.5@964982703,3:-1``."""
    events = []
    for position, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        item, _, rest = part.partition(":")
        weight_text, _, time_text = rest.partition("@")
        try:
            weight = float(weight_text) if weight_text else 1.0
            timestamp = float(time_text) if time_text else None
        except ValueError as exc:
            raise InvalidArgument(
                f"--history entry {position} ({part!r}) must look like ID[:WEIGHT[@TIMESTAMP]]",
                field="history",
            ) from exc
        events.append(HistoryEvent(item.strip(), weight, timestamp))
    return events


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


def _results_json(results: Results) -> dict[str, Any]:
    return {
        "source": results.source,
        "unknown_ids": list(results.unknown_ids),
        "items": [
            {
                "id": i.id,
                "score": i.score,
                "text": i.text,
                "metadata": i.metadata,
                "reasons": [asdict(r) for r in i.reasons],
            }
            for i in results.items
        ],
    }


def print_results(results: Results, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_results_json(results), ensure_ascii=False, indent=2))
        return
    if results.unknown_ids:
        print(f"skipped unknown ids: {', '.join(results.unknown_ids)}", file=sys.stderr)
    print(f"{'#':>3}  {'id':<10} {'score':>8}  item   (from {results.source})")
    for rank, item in enumerate(results.items, 1):
        label = str(item.metadata.get("title") or item.metadata.get("name") or item.text)
        extra = item.metadata.get("genres")
        if isinstance(extra, list):
            label += f"  [{', '.join(map(str, extra))}]"
        print(f"{rank:>3}  {item.id:<10} {item.score:>8.4f}  {label[:100]}")
        for reason in item.reasons:
            what = (
                f"you liked {reason.label or reason.item_id}"
                if reason.kind == "item"
                else "your interests"
            )
            print(f"{'':>25}because {what} ({reason.share:.0%})")


def describe_manifest(manifest: Manifest, path: Path) -> str:
    lines = [
        f"index      {manifest.name}  version {manifest.version}",
        f"path       {path}",
        f"created    {manifest.created_at}  by vecrec {manifest.vecrec_version}",
        f"items      {manifest.item_count}",
        f"model      {manifest.model.spec}  ({manifest.model.dimension}-d, "
        f"max {manifest.model.max_seq_length} tokens)",
        f"faiss      {manifest.index.factory}  ({manifest.index.chosen_by}), "
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


def add_rerank_options(parser: argparse.ArgumentParser) -> None:
    """Strategy, re-ranking and explanation options of the query commands."""
    parser.add_argument(
        "--strategy",
        choices=["mean", "best_score", "multi_interest"],
        default=None,
        help="history → query strategy (default: multi_interest)",
    )
    parser.add_argument(
        "--max-interests", type=positive_int, default=3, help="multi_interest: most taste clusters"
    )
    parser.add_argument(
        "--mmr",
        type=float,
        default=None,
        metavar="LAMBDA",
        help="MMR diversity: 1 = pure relevance, lower = more diverse",
    )
    parser.add_argument(
        "--crowd", default=None, metavar="FIELD=N", help="at most N results share a value of FIELD"
    )
    parser.add_argument(
        "--boost",
        action="append",
        default=[],
        metavar="FIELD=WEIGHT[:rank|minmax]",
        help="bounded boost by a numeric field (repeatable)",
    )
    parser.add_argument(
        "--max-boost", type=float, default=1.2, help="largest factor boosts may lift a relevance by"
    )
    parser.add_argument(
        "--no-exact", action="store_true", help="skip re-scoring with the stored full vectors"
    )
    parser.add_argument(
        "--cross-encoder",
        default=None,
        metavar="DIR",
        help="re-rank text queries with this local cross-encoder",
    )
    parser.add_argument(
        "--explain", action="store_true", help="name the history items behind each result"
    )


def query_options(args: argparse.Namespace) -> Any:
    """The QueryOptions the query command's flags describe."""
    from engine import Boost, Crowding, QueryOptions, RerankConfig

    crowding = None
    if args.crowd:
        name, sep, count = args.crowd.partition("=")
        if not sep or not count.strip().isdigit():
            raise InvalidArgument(f"--crowd {args.crowd!r} must look like FIELD=N", field="crowd")
        crowding = Crowding(name.strip(), int(count))
    boosts = []
    for text in args.boost:
        name, sep, rest = text.partition("=")
        weight, _, transform = rest.partition(":")
        try:
            boosts.append(Boost(name.strip(), float(weight), transform or "rank"))
        except ValueError as exc:
            raise InvalidArgument(
                f"--boost {text!r} must look like FIELD=WEIGHT[:rank|minmax]", field="boost"
            ) from exc
    rerank = RerankConfig(
        exact=not args.no_exact,
        cross_encoder=args.cross_encoder is not None,
        boosts=tuple(boosts),
        max_boost=args.max_boost,
        mmr_lambda=args.mmr,
        crowding=crowding,
    )
    return QueryOptions(
        strategy=args.strategy or QueryOptions().strategy,
        max_interests=args.max_interests,
        rerank=rerank,
        explain=args.explain,
    )


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))
