"""The ``vecrec`` command line: build and inspect indexes, serve, query and evaluate from the shell.

Every failure the user can cause ends with one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from api import cli_eval, cli_hybrid, cli_perf, cli_serve, cli_updates, cli_versions
from api.cli_common import (
    EXIT_ERROR,
    Parser,
    add_catalog_options,
    add_interactions_options,
    catalog_spec,
    describe_manifest,
    interactions_spec,
    positive_int,
    print_json,
    resolve_index,
)
from api.cli_query import (
    add_rerank_options,
    parse_filter,
    parse_history,
    print_results,
    query_options,
)
from engine import Recommender, VecrecError
from engine.wal import logged_updates
from engine.writes import pending_changes


def cmd_index_build(args: argparse.Namespace) -> int:
    from indexer.build import BuildConfig, build

    config = BuildConfig(
        catalog=catalog_spec(args, args.catalog),
        name=args.name,
        indexes_dir=Path(args.indexes_dir),
        model=args.model,
        factory=args.factory,
        batch_size=args.batch_size,
        interactions=interactions_spec(args),
        progress=not args.quiet,
        threads=args.threads,
        cache=not args.no_cache,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        backend=args.backend,
        target_recall=args.target_recall,
        gpu=args.gpu,
        **cli_hybrid.build_fields(args),  # CF vectors and BM25 (issue 9)
    )
    from api.cli_bulk import build_embedder  # --engine ray (issue 6)

    superseded = logged_updates(Path(args.indexes_dir) / args.name)
    report = build(config, embedder=build_embedder(args))
    if superseded:
        # Builds replace: a silent drop of live updates would look like data loss.
        print(
            f"note: {superseded} live-update batches logged on the previous version are not in "
            "this build (it is made from the catalogue); they stay with that version",
            file=sys.stderr,
        )
    if args.json:
        print_json(
            {
                "path": report.path,
                "seconds": report.seconds,
                "embedded": report.embedded,
                "cached": report.cached,
                "manifest": report.manifest.to_dict(),
            }
        )
    else:
        print(describe_manifest(report.manifest, report.path))
        count = report.manifest.item_count
        cache = f"; {report.cached} of {count} texts from the cache" if config.cache else ""
        print(
            f"built in {report.seconds['total']:.1f} s (embedding {report.seconds['embed']:.1f} s"
            f"{cache})"
        )
    return 0


def cmd_index_info(args: argparse.Namespace) -> int:
    from engine.ann import is_exact
    from engine.evaluation.ann import ann_quality

    recommender = Recommender.open(resolve_index(args.index, Path(args.indexes_dir)))
    bundle = recommender.bundle
    quality = None if args.no_recall else ann_quality(recommender.searcher, k=10)
    if args.json:
        # The manifest's own fields at the top, as scripts read them, plus where and how good.
        out: dict[str, Any] = {**bundle.manifest.to_dict(), "path": bundle.path}
        if quality is not None:
            out["ann"] = {"recall_at_10": quality.recall, "ms_per_query": quality.ms_per_query}
        out["live_updates"] = {
            "batches": bundle.log.last_seq,
            "pending": pending_changes(bundle),
            "items": bundle.live_count,
        }
        print_json(out)
        return 0
    print(describe_manifest(bundle.manifest, bundle.path))
    print("checksums  ok")
    tuned = cli_perf.describe_autotune(bundle.manifest)
    if tuned:
        print(tuned)
    if bundle.log.last_seq:
        print(
            f"updates    {bundle.log.last_seq} logged batches, {pending_changes(bundle)} changes "
            f"pending compaction; {bundle.live_count:,d} items served"
        )
    if quality is not None:
        exact = " (exact index)" if is_exact(bundle.index) else ""
        print(
            f"ann        recall@10 {quality.recall:.3f} vs exact search{exact}, "
            f"{quality.ms_per_query:.2f} ms/query ({quality.queries} probe queries)"
        )
    return 0


def _open(args: argparse.Namespace) -> Recommender:
    from engine import CrossEncoderReranker

    reranker = CrossEncoderReranker(args.cross_encoder) if args.cross_encoder else None
    return Recommender.open(
        resolve_index(args.index, Path(args.indexes_dir)),
        text_reranker=reranker,
        config=cli_perf.recommender_config(args),
    )


def cmd_recommend(args: argparse.Namespace) -> int:
    results = _open(args).recommend(
        parse_history(args.history or ""),
        args.interests,
        args.k,
        exclude=[e.strip() for e in (args.exclude or "").split(",") if e.strip()],
        filters=[parse_filter(f) for f in args.filter],
        options=query_options(args),
    )
    print_results(results, args.json)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    filters = [parse_filter(f) for f in args.filter]
    results = _open(args).similar(
        args.item_id, args.k, filters=filters, options=query_options(args)
    )
    print_results(results, args.json)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    filters = [parse_filter(f) for f in args.filter]
    results = _open(args).search(args.text, args.k, filters=filters, options=query_options(args))
    print_results(results, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vecrec", description="Vector-search recommendations over FAISS index bundles."
    )
    parser.add_argument(
        "--indexes-dir",
        default=os.environ.get("VECREC_INDEXES_DIR", "indexes"),
        help="where named indexes live (default: indexes, or $VECREC_INDEXES_DIR)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    index = sub.add_parser("index", help="build and inspect index bundles")
    index_sub = index.add_subparsers(dest="index_command", required=True, parser_class=Parser)
    b = index_sub.add_parser("build", help="embed a catalogue and write a new index version")
    b.add_argument("catalog", help="catalogue file: .csv/.tsv, .jsonl or .parquet")
    b.add_argument("--name", required=True, help="index name: written to INDEXES_DIR/NAME")
    add_catalog_options(b)
    add_interactions_options(b, required=False)
    b.add_argument(
        "--factory", default="auto", help="FAISS factory string, or auto (by catalogue size)"
    )
    b.add_argument(
        "--no-cache",
        action="store_true",
        help="embed every text again instead of reusing vectors of unchanged texts",
    )
    b.add_argument(
        "--cache-dir",
        default=None,
        help="embedding cache directory (default: INDEXES_DIR/.cache)",
    )
    cli_perf.add_build_options(b)
    cli_hybrid.add_build_options(b)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--json", action="store_true")
    from api import cli_bulk  # bulk retrieval and the Ray engine (issue 6)

    cli_bulk.add_engine_options(b, "embed the catalogue")
    b.set_defaults(func=cmd_index_build)
    info = index_sub.add_parser(
        "info", help="show an index's manifest, verify checksums, measure ANN recall"
    )
    info.add_argument("index", nargs="?", default=None)
    info.add_argument("--no-recall", action="store_true", help="skip the recall@10 measurement")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_index_info)
    cli_versions.register(index_sub)
    cli_updates.register(index_sub)

    def query_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--index",
            default=None,
            help="bundle path or index name (default: $VECREC_INDEX or movielens)",
        )
        p.add_argument("-k", type=positive_int, default=10)
        p.add_argument(
            "--filter",
            action="append",
            default=[],
            help="FIELD=VALUE, FIELD=A,B, FIELD>=N or JSON (repeatable, ANDed)",
        )
        p.add_argument("--json", action="store_true", help="machine-readable output")
        add_rerank_options(p)
        cli_perf.add_query_options(p)

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

    cli_serve.register(sub)

    cli_eval.register(sub)
    cli_bulk.register(sub)
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
