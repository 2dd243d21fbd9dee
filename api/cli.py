"""The ``vecrec`` command line: build and inspect indexes, serve, and query from the shell.

Every failure the user can cause ends with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import Filter, HistoryEvent, InvalidArgument, Recommender, Results, VecrecError
from engine.bundle import resolve_bundle_dir
from engine.errors import BundleNotFound
from engine.manifest import Manifest

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
            {"id": i.id, "score": i.score, "text": i.text, "metadata": i.metadata}
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


# -- commands --------------------------------------------------------------------------------------


def cmd_index_build(args: argparse.Namespace) -> int:
    from engine.interactions import InteractionsSpec
    from engine.tables import TableFormat
    from indexer.build import BuildConfig, build
    from indexer.catalog import CatalogSpec, JoinSpec

    table_format = TableFormat(args.format, args.delimiter, args.encoding)
    list_columns = {}
    for spec in args.list_column:
        column, sep, separator = spec.partition("=")
        if not sep or not separator:
            raise InvalidArgument(
                f"--list-column {spec!r} must look like COLUMN=SEPARATOR", field="list_column"
            )
        list_columns[column] = separator
    config = BuildConfig(
        catalog=CatalogSpec(
            path=Path(args.catalog),
            id_column=args.id_column,
            text_template=args.text,
            metadata_columns=tuple(c.strip() for c in args.metadata.split(",") if c.strip())
            if args.metadata is not None
            else None,
            list_columns=list_columns,
            joins=tuple(JoinSpec.parse(j) for j in args.join),
            table_format=table_format,
        ),
        name=args.name,
        indexes_dir=Path(args.indexes_dir),
        model=args.model,
        factory=args.factory,
        batch_size=args.batch_size,
        interactions=InteractionsSpec(Path(args.interactions), args.user_column, args.item_column)
        if args.interactions
        else None,
        progress=not args.quiet,
        threads=args.threads,
    )
    report = build(config)
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(report.path),
                    "seconds": report.seconds,
                    "manifest": report.manifest.to_dict(),
                },
                indent=2,
            )
        )
    else:
        print(describe_manifest(report.manifest, report.path))
        print(
            f"built in {report.seconds['total']:.1f} s (embedding {report.seconds['embed']:.1f} s)"
        )
    return 0


def cmd_index_info(args: argparse.Namespace) -> int:
    from engine import Bundle

    bundle = Bundle.load(resolve_index(args.index, Path(args.indexes_dir)), verify=True)
    if args.json:
        print(json.dumps(bundle.manifest.to_dict(), indent=2))
    else:
        print(describe_manifest(bundle.manifest, bundle.path))
        print("checksums  ok")
    return 0


def _open(args: argparse.Namespace) -> Recommender:
    return Recommender.open(resolve_index(args.index, Path(args.indexes_dir)))


def cmd_recommend(args: argparse.Namespace) -> int:
    recommender = _open(args)
    results = recommender.recommend(
        parse_history(args.history or ""),
        args.interests,
        args.k,
        exclude=[e.strip() for e in (args.exclude or "").split(",") if e.strip()],
        filters=[parse_filter(f) for f in args.filter],
    )
    print_results(results, args.json)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    results = _open(args).similar(
        args.item_id, args.k, filters=[parse_filter(f) for f in args.filter]
    )
    print_results(results, args.json)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    results = _open(args).search(args.text, args.k, filters=[parse_filter(f) for f in args.filter])
    print_results(results, args.json)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app, load_recommender
    from api.settings import Settings

    indexes_dir = Path(args.indexes_dir)
    if args.sample:
        from indexer.build import build
        from indexer.sample import SAMPLE_NAME, sample_config

        target = indexes_dir / SAMPLE_NAME
        try:
            resolve_bundle_dir(target)
        except VecrecError:
            print(
                f"building the sample index at {target} (first run only; a few minutes)",
                file=sys.stderr,
            )
            build(sample_config(indexes_dir))
        index = target
    else:
        index = resolve_index(args.index, indexes_dir)
    overrides: dict[str, Any] = {"index": index, "host": args.host, "port": args.port}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    # Load (and verify) before binding the port, so a bad bundle is one line, not a traceback.
    recommender = load_recommender(settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    print(
        f"serving {recommender.bundle.path} on http://{settings.host}:{settings.port} (docs at /docs)",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(settings, recommender), host=settings.host, port=settings.port, log_level="info"
    )
    return 0


# -- parser ----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, like every other failure (argparse prints the whole usage by default).
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vecrec", description="Vector-search recommendations over FAISS index bundles."
    )
    parser.add_argument(
        "--indexes-dir",
        default=os.environ.get("VECREC_INDEXES_DIR", "indexes"),
        help="where named indexes live (default: indexes)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    index = sub.add_parser("index", help="build and inspect index bundles")
    index_sub = index.add_subparsers(dest="index_command", required=True, parser_class=_Parser)
    b = index_sub.add_parser("build", help="embed a catalogue and write a new index version")
    b.add_argument("catalog", help="catalogue file: .csv/.tsv, .jsonl or .parquet")
    b.add_argument("--name", required=True, help="index name: written to INDEXES_DIR/NAME")
    b.add_argument("--id-column", default="id", help="column holding item ids (default: id)")
    b.add_argument(
        "--text",
        default=None,
        help='text template, e.g. "{title}. Genres: {genres}.[ Tags: {tags}.]"',
    )
    b.add_argument(
        "--metadata",
        default=None,
        help="comma-separated metadata columns (default: all but the id)",
    )
    b.add_argument(
        "--list-column",
        action="append",
        default=[],
        metavar="COLUMN=SEP",
        help="split COLUMN on SEP into a list (repeatable)",
    )
    b.add_argument(
        "--join",
        action="append",
        default=[],
        metavar="NAME=PATH:KEY:COLUMN",
        help="add field NAME from PATH's COLUMN, matched on KEY (repeatable)",
    )
    b.add_argument(
        "--interactions",
        default=None,
        help="interactions file; gives popularity (the fallback ranking)",
    )
    b.add_argument("--user-column", default="user_id")
    b.add_argument("--item-column", default="item_id")
    b.add_argument(
        "--model",
        default="all-MiniLM-L6-v2",
        help="sentence-transformers model directory (default: bundled all-MiniLM-L6-v2)",
    )
    b.add_argument(
        "--factory", default="auto", help="FAISS factory string, or auto (by catalogue size)"
    )
    b.add_argument("--batch-size", type=_positive_int, default=64)
    b.add_argument(
        "--threads", type=_positive_int, default=None, help="torch threads for embedding"
    )
    b.add_argument("--format", choices=["csv", "jsonl", "parquet"], default=None)
    b.add_argument(
        "--delimiter", default=None, help="CSV field separator (default: , or tab for .tsv)"
    )
    b.add_argument("--encoding", default="utf-8")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_index_build)
    info = index_sub.add_parser("info", help="show an index's manifest and verify its checksums")
    info.add_argument("index", nargs="?", default=None)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_index_info)

    def query_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--index",
            default=None,
            help="bundle path or index name (default: $VECREC_INDEX or movielens)",
        )
        p.add_argument("-k", type=_positive_int, default=10)
        p.add_argument(
            "--filter",
            action="append",
            default=[],
            help="FIELD=VALUE, FIELD=A,B, FIELD>=N or JSON (repeatable, ANDed)",
        )
        p.add_argument("--json", action="store_true", help="machine-readable output")

    r = sub.add_parser("recommend", help="recommend for a history and/or interests")
    query_options(r)
    r.add_argument("--history", default=None, help="ID[:WEIGHT[@UNIXTIME]],... e.g. 1:5,2:4.5,3:-1")
    r.add_argument("--interests", default=None, help="free text")
    r.add_argument("--exclude", default=None, help="comma-separated ids never to return")
    r.set_defaults(func=cmd_recommend)
    s = sub.add_parser("similar", help="items similar to an item")
    query_options(s)
    s.add_argument("item_id")
    s.set_defaults(func=cmd_similar)
    q = sub.add_parser("search", help="search items by meaning")
    query_options(q)
    q.add_argument("text")
    q.set_defaults(func=cmd_search)

    sv = sub.add_parser("serve", help="serve an index over HTTP")
    sv.add_argument("--index", default=None, help="bundle path or index name")
    sv.add_argument(
        "--sample",
        action="store_true",
        help="serve the MovieLens sample, building it first if missing",
    )
    sv.add_argument("--host", default=None, help="default 127.0.0.1 (VECREC_HOST)")
    sv.add_argument("--port", type=int, default=None, help="default 8000 (VECREC_PORT)")
    sv.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except VecrecError as exc:
        if args.verbose:
            raise
        print(f"vecrec: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vecrec: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if args.verbose:
            raise
        print(f"vecrec: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["build_parser", "main", "parse_filter", "parse_history"]
