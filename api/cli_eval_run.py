"""Running ``vecrec eval recommend`` and ``vecrec eval search`` once their arguments are parsed
(:mod:`api.cli_eval`): the bundle to evaluate, the methods compared, and the reports printed."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli_common import catalog_spec, interactions_spec, print_json, resolve_index
from engine import InvalidArgument, Recommender
from engine.embed_cache import CACHE_DIR_NAME
from engine.evaluation.ann import AnnQuality, ann_quality
from engine.evaluation.beir import SearchReport
from engine.evaluation.runner import EvalReport

if TYPE_CHECKING:
    from engine.evaluation import Method

METHODS = ("random", "popular", "item-knn", "content")
# The engine's other modes (issue 9): CF and popularity learnt from each split's training part.
MODE_METHODS = ("content+popularity", "collaborative", "hybrid")


def _recommender_for(args: argparse.Namespace, catalog: str | None) -> Recommender:
    """The bundle to evaluate: ``--index``, or one built now from the catalogue (in a temp dir)."""
    if args.index:
        return Recommender.open(resolve_index(args.index, Path(args.indexes_dir)))
    if not catalog:
        raise InvalidArgument("give --catalog (to build an index) or --index", field="catalog")
    from indexer.build import BuildConfig, build

    target = Path(tempfile.mkdtemp(prefix="vecrec-eval-"))
    print(
        f"building an index of {catalog} in {target} (pass --index to reuse one)", file=sys.stderr
    )
    report = build(
        BuildConfig(
            catalog=catalog_spec(args, catalog),
            name="eval",
            indexes_dir=target,
            model=args.model,
            factory=args.factory,
            batch_size=args.batch_size,
            progress=not args.quiet,
            threads=args.threads,
            # The throw-away bundle still shares the indexes' embedding cache: a second
            # evaluation of the same catalogue and model embeds nothing.
            cache_dir=Path(args.indexes_dir) / CACHE_DIR_NAME,
            lexical=getattr(args, "lexical", False),
        )
    )
    return Recommender.open(report.path)


def cmd_eval_recommend(args: argparse.Namespace) -> int:
    from engine.collaborative import ALSConfig
    from engine.evaluation import (
        EngineMethod,
        ItemKNNMethod,
        PopularMethod,
        RandomMethod,
    )
    from engine.evaluation.modes import mode_methods
    from engine.interactions import load_interactions
    from engine.results import QueryOptions

    methods_wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods_wanted) - set(METHODS) - set(MODE_METHODS))
    if unknown:
        raise InvalidArgument(
            f"unknown method(s) {unknown}; choose from {', '.join(METHODS + MODE_METHODS)}",
            field="methods",
        )
    spec = interactions_spec(args)
    assert spec is not None  # --interactions is required
    interactions = load_interactions(spec)
    recommender = _recommender_for(args, args.catalog)
    catalogue = [str(i) for i in recommender.bundle.ids]
    factories: dict[str, Callable[[], Method]] = {
        "random": lambda: RandomMethod(catalogue, seed=args.seed),
        "popular": lambda: PopularMethod(catalogue),
        "item-knn": lambda: ItemKNNMethod(
            catalogue, neighbours=args.knn_neighbours or None, positive_threshold=args.threshold
        ),
        "content": lambda: EngineMethod(
            recommender, "content", options=QueryOptions(mode="content")
        ),
    }
    # CF positives are the ratings that count as hits, as item-kNN's are.
    modes = mode_methods(recommender, ALSConfig(positive_threshold=args.threshold))
    for name in MODE_METHODS:
        factories[name] = functools.partial(modes.__getitem__, name)
    if args.both_splits:
        return _both_splits(args, interactions, recommender, catalogue, methods_wanted, factories)
    config = _eval_config(args, args.validation)
    report = _evaluate(interactions, recommender, catalogue, methods_wanted, factories, config)
    quality = _finish(args, recommender, report)
    if args.json:
        print_json(
            {
                "split": report.split,
                "users": report.users,
                "train_interactions": report.train_interactions,
                "test_interactions": report.test_interactions,
                "dropped_interactions": report.dropped_interactions,
                "results": {r.name: {**r.metrics, "seconds": r.seconds} for r in report.results},
                "ann": _ann_json(quality),
                "index": str(recommender.bundle.path),
            }
        )
    else:
        print(format_recommend_report(report, quality))
    return 0


def _eval_config(args: argparse.Namespace, validation: bool) -> Any:
    from engine.evaluation import EvalConfig, SplitConfig

    return EvalConfig(
        ks=args.ks,
        threshold=args.threshold,
        split=SplitConfig(
            method=args.split, holdout=args.holdout, min_history=args.min_history, seed=args.seed
        ),
        validation=validation,
    )


def _evaluate(
    interactions: Any,
    recommender: Recommender,
    catalogue: list[str],
    methods_wanted: list[str],
    factories: dict[str, Callable[[], Method]],
    config: Any,
) -> EvalReport:
    from engine.evaluation import evaluate_recommenders

    return evaluate_recommenders(
        interactions,
        [factories[m]() for m in methods_wanted],
        config,
        catalogue=catalogue,
        vectors=recommender.bundle.vectors,
        row_of=recommender.bundle.row_of,
    )


def _both_splits(
    args: argparse.Namespace,
    interactions: Any,
    recommender: Recommender,
    catalogue: list[str],
    methods_wanted: list[str],
    factories: dict[str, Callable[[], Method]],
) -> int:
    """Validation, then test, with the same methods: choices are read off the first."""
    reports = {}
    for name, validation in (("validation", True), ("test", False)):
        config = _eval_config(args, validation)
        reports[name] = _evaluate(
            interactions, recommender, catalogue, methods_wanted, factories, config
        )
    quality = ann_quality(recommender.searcher, k=10)
    if args.json:
        print_json(
            {
                name: {
                    "split": report.split,
                    "users": report.users,
                    "results": {
                        r.name: {**r.metrics, "seconds": r.seconds} for r in report.results
                    },
                }
                for name, report in reports.items()
            }
        )
    else:
        for name, report in reports.items():
            print(f"== {name} ==")
            print(format_recommend_report(report, quality))
    return 0


def _finish(
    args: argparse.Namespace, recommender: Recommender, report: EvalReport | SearchReport
) -> AnnQuality:
    """Measure the index's ANN recall and write the --report directory when asked."""
    quality = ann_quality(recommender.searcher, k=10)
    if args.report:
        from api.report import write_report

        written = write_report(Path(args.report), report, recommender, quality)
        print(f"report written to {written}", file=sys.stderr)
    return quality


def _ann_json(quality: AnnQuality) -> dict[str, Any]:
    return {
        "recall_at_10": quality.recall,
        "ms_per_query": quality.ms_per_query,
        "params": quality.params,
    }


def format_recommend_report(report: EvalReport, quality: AnnQuality) -> str:
    """A terminal table: one row per method, accuracy columns at each K, then list metrics."""
    lines = [
        report.split,
        f"{report.users} users with relevant held-out items; {report.train_interactions} training "
        f"and {report.test_interactions} relevant test interactions; "
        f"{report.dropped_interactions} interactions outside the catalogue dropped",
    ]
    table = report.table()
    order = [f"{m}@{k}" for m in ("NDCG", "Recall", "HitRate") for k in report.ks] + ["MRR"]
    order += [f"{m}@{k}" for m in ("Coverage", "Diversity", "Novelty") for k in report.ks]
    columns = [c for c in order if c in table.columns]
    width = max(len(r.name) for r in report.results) + 2
    lines.append(" " * width + " ".join(f"{c:>12}" for c in columns) + f" {'seconds':>9}")
    seconds = {r.name: r.seconds for r in report.results}
    for name, row in table.iterrows():
        cells = " ".join(f"{row[c]:>12.4f}" for c in columns)
        lines.append(f"{name!s:<{width}}{cells} {seconds[str(name)]:>9.1f}")
    lines.append(
        f"index ANN recall@10 vs exact: {quality.recall:.3f} "
        f"({quality.ms_per_query:.2f} ms/query, params {quality.params or 'exact'})"
    )
    return "\n".join(lines)


def cmd_eval_search(args: argparse.Namespace) -> int:
    from engine.evaluation.beir import evaluate_search, load_qrels, load_queries
    from engine.extras import parts_of
    from engine.results import QueryOptions

    queries = load_queries(Path(args.queries))
    qrels = load_qrels(Path(args.qrels))
    recommender = _recommender_for(args, args.corpus)
    report = evaluate_search(recommender, queries, qrels, k=args.k)
    # With a BM25 index the default is dense + BM25: dense alone is measured beside it.
    by_mode = {"default": report}
    if parts_of(recommender.bundle).lexical is not None:
        dense = Recommender(
            recommender.bundle,
            recommender.embedder,
            dataclasses.replace(recommender.config, options=QueryOptions(mode="content")),
        )
        by_mode = {
            "dense+bm25": report,
            "dense": evaluate_search(dense, queries, qrels, k=args.k),
        }
    quality = _finish(args, recommender, report)
    if args.json:
        print_json(
            {
                "metrics": report.metrics,
                "queries": report.queries,
                "ms_per_query": 1000 * report.seconds_per_query,
                "ann": _ann_json(quality),
                "index": str(recommender.bundle.path),
                "modes": {name: r.metrics for name, r in by_mode.items()},
            }
        )
    else:
        for name, r in by_mode.items():
            metrics = "  ".join(f"{metric} {value:.4f}" for metric, value in r.metrics.items())
            label = "" if name == "default" else f"{name}: "
            print(
                f"{label}{r.queries} queries: {metrics}  "
                f"({1000 * r.seconds_per_query:.1f} ms/query)"
            )
        print(f"index ANN recall@10 vs exact: {quality.recall:.3f}")
    return 0
