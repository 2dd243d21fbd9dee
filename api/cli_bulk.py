"""``vecrec bulk``: recommendations for every user of a file into Parquet parts (issue 6)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from api.cli_common import add_table_options, positive_int, print_json, resolve_index
from api.cli_query import add_rerank_options, parse_filter, query_options
from engine import InvalidArgument, Recommender
from engine.bulk import DEFAULT_CHUNK, BulkReport, BulkRequest, UsersSpec
from engine.tables import TableFormat


def users_spec(args: argparse.Namespace) -> UsersSpec:
    return UsersSpec(
        path=Path(args.users),
        layout=args.layout,
        user_column=args.user_column,
        history_column=args.history_column,
        item_column=args.item_column,
        weight_column=args.rating_column,
        timestamp_column=args.timestamp_column,
        table_format=TableFormat(args.users_format, args.users_delimiter, args.users_encoding),
    )


def bulk_request(args: argparse.Namespace) -> BulkRequest:
    return BulkRequest(
        k=args.k,
        options=query_options(args),
        filters=tuple(parse_filter(f) for f in args.filter),
        exclude=tuple(e.strip() for e in (args.exclude or "").split(",") if e.strip()),
        exclude_seen=not args.include_seen,
    )


def open_recommender(index: Path, cross_encoder: str | None) -> Recommender:
    """The bundle fully in memory (bulk reads every vector many times), checksums verified."""
    from engine import CrossEncoderReranker
    from engine.bundle import Bundle

    reranker = CrossEncoderReranker(cross_encoder) if cross_encoder else None
    return Recommender(Bundle.load(index, mmap=False), text_reranker=reranker)


def _total_users(spec: UsersSpec) -> int | None:
    """Users in a one-row-per-user Parquet file (its footer says), else unknown."""
    if spec.layout != "wide" or spec.path.suffix.lower() not in (".parquet", ".pq"):
        return None
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(spec.path).metadata.num_rows)
    except Exception:  # an unreadable file is reported by the reader, with its reason
        return None


def cmd_bulk(args: argparse.Namespace) -> int:
    index = resolve_index(args.index, Path(args.indexes_dir))
    spec, request = users_spec(args), bulk_request(args)
    ray = _ray_engine(args)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    bar: Any = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=_total_users(spec), unit="user", file=sys.stderr, dynamic_ncols=True)

    def progress(report: BulkReport) -> None:
        if bar is not None:
            bar.update(report.stats.users - bar.n)  # tqdm shows the users/s

    common: dict[str, Any] = {
        "chunk_size": args.chunk_size,
        "resume": args.resume,
        "progress": progress,
    }
    try:
        if ray:
            from engine.bulk.ray_job import run_bulk_ray

            report = run_bulk_ray(
                index, spec, Path(args.out), request, address=args.address,
                workers=args.workers, cross_encoder=args.cross_encoder, threads=args.threads,
                **common,
            )  # fmt: skip
        else:
            from engine.bulk import run_bulk

            recommender = open_recommender(index, args.cross_encoder)
            report = run_bulk(recommender, spec, Path(args.out), request, **common)
    finally:
        if bar is not None:
            bar.close()
    summary = report.summary()
    if args.json:
        print_json({"out": str(report.out), **summary})
    else:
        resumed = f", {report.parts_skipped} parts kept from before" if report.parts_skipped else ""
        print(
            f"{summary['users']:,d} users → {summary['rows']:,d} rows in "
            f"{report.parts_written} parts under {report.out}{resumed}; "
            f"{summary['seconds']:.1f} s, {summary['users_per_second']:,.0f} users/s"
        )
    return 0


def _ray_engine(args: argparse.Namespace) -> bool:
    """True for ``--engine ray``; the Ray-only options are refused without it."""
    if args.engine != "ray" and (args.address or args.workers):
        raise InvalidArgument("--address and --workers need --engine ray", field="engine")
    return bool(args.engine == "ray")


def add_engine_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--engine local|ray``, ``--address``, ``--workers`` (bulk and index build)."""
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help=f"ray: {what} on a Ray cluster (pip install 'vecrec[ray]')",
    )
    parser.add_argument(
        "--address", default=None, help="ray: cluster address (default: start a local one)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="ray: actors (default 2)"
    )


def build_embedder(args: argparse.Namespace) -> Any:
    """The embedder ``index build`` uses: None (the build's own) or one on Ray actors."""
    if not _ray_engine(args):
        return None
    if getattr(args, "backend", "torch") != "torch" or getattr(args, "gpu", False):
        raise InvalidArgument(
            "--engine ray embeds with the torch backend on CPU workers", field="engine"
        )
    from indexer.ray_embed import RayEmbedder

    return RayEmbedder(
        args.model, workers=args.workers or 2, address=args.address, threads=args.threads
    )


def register(sub: Any) -> None:
    """Add the ``bulk`` command to the top-level subparsers."""
    b = sub.add_parser(
        "bulk",
        help="recommendations for every user of a file, into Parquet parts",
        description="Answer every user of --users with the same request options as POST "
        "/recommend, into OUT/part-NNNNNN.parquet (user_id, rank, item_id, score[, explanation]).",
    )
    b.add_argument("--index", default=None, help="bundle path or index name")
    b.add_argument("--users", required=True, help="users file: .parquet, .csv/.tsv or .jsonl")
    b.add_argument("--out", required=True, help="output directory of Parquet parts")
    b.add_argument("-k", "--k", type=positive_int, default=10, help="results per user")
    b.add_argument(
        "--layout",
        choices=["wide", "long"],
        default="wide",
        help="wide: one row per user with a history list; long: one row per interaction",
    )
    b.add_argument("--user-column", default="user_id")
    b.add_argument(
        "--history-column",
        default="history",
        help="wide: list of item ids or of {item_id, weight, timestamp} (JSON text in a CSV)",
    )
    b.add_argument("--item-column", default="item_id", help="long: the item id column")
    b.add_argument("--rating-column", default=None, help="long: rating or weight column")
    b.add_argument("--timestamp-column", default=None, help="long: Unix-seconds time column")
    add_table_options(b, "users")
    b.add_argument(
        "--filter",
        action="append",
        default=[],
        help="FIELD=VALUE, FIELD=A,B, FIELD>=N or JSON (repeatable, ANDed)",
    )
    b.add_argument("--exclude", default=None, help="comma-separated ids never to return")
    b.add_argument("--include-seen", action="store_true", help="allow history items in the answers")
    add_rerank_options(b)
    b.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK,
        help=f"users per search batch and per output part (default {DEFAULT_CHUNK})",
    )
    b.add_argument("--threads", type=positive_int, default=None, help="FAISS/BLAS threads")
    b.add_argument("--resume", action="store_true", help="keep finished parts of a killed run")
    add_engine_options(b, "answer the chunks")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    b.set_defaults(func=cmd_bulk)
