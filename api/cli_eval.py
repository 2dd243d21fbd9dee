"""``vecrec eval recommend`` and ``vecrec eval search``: offline evaluation from the shell.

This module holds the commands' arguments; :mod:`api.cli_eval_run` runs them.
"""

from __future__ import annotations

import argparse
from typing import Any

from api.cli_common import add_catalog_options, add_interactions_options, positive_int
from api.cli_eval_run import METHODS, MODE_METHODS, cmd_eval_recommend, cmd_eval_search


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from exc
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError("K values must be positive integers")
    return ks


def _holdout(text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc


def register(sub: Any) -> None:
    """Add the ``eval`` command group to the top-level subparsers."""
    from api.cli_common import Parser

    ev = sub.add_parser("eval", help="offline evaluation against baselines")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True, parser_class=Parser)

    r = ev_sub.add_parser("recommend", help="recommendation quality on an interactions log")
    r.add_argument("--catalog", default=None, help="catalogue to index and evaluate (or --index)")
    r.add_argument(
        "--index", default=None, help="evaluate an existing bundle instead of building one"
    )
    add_catalog_options(r)
    add_interactions_options(r, required=True)
    r.add_argument("--split", choices=["temporal", "leave-one-out"], default="temporal")
    r.add_argument(
        "--holdout",
        type=_holdout,
        default=0.2,
        help="fraction (< 1) or count of each user's last interactions held out (default 0.2)",
    )
    r.add_argument(
        "--min-history",
        type=positive_int,
        default=1,
        help="skip users with fewer training interactions",
    )
    r.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="held-out interactions count as hits only at or above this rating (e.g. 4)",
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--ks",
        type=_ks,
        default=(10, 20, 100),
        help="cut-offs, comma-separated (default 10,20,100)",
    )
    r.add_argument(
        "--methods",
        default=",".join(METHODS + MODE_METHODS),
        help=f"comma-separated, of {', '.join(METHODS + MODE_METHODS)}",
    )
    r.add_argument(
        "--knn-neighbours",
        type=int,
        default=0,
        help="item-kNN neighbours kept per item (default 0: all, the best on the validation split)",
    )
    r.add_argument(
        "--validation",
        action="store_true",
        help="score on the validation split (carved from training) instead of the test split",
    )
    r.add_argument(
        "--both-splits",
        action="store_true",
        help="score on the validation split, then on the test split (one table each)",
    )
    _output_options(r)
    r.set_defaults(func=cmd_eval_recommend)

    s = ev_sub.add_parser("search", help="text-search quality on a BEIR collection")
    s.add_argument("--corpus", default=None, help="BEIR corpus.jsonl (or --index)")
    s.add_argument("--queries", required=True, help="BEIR queries.jsonl")
    s.add_argument("--qrels", required=True, help="BEIR qrels TSV, e.g. qrels/test.tsv")
    s.add_argument("--index", default=None, help="evaluate an existing bundle of the corpus")
    s.add_argument("-k", type=positive_int, default=100, help="results per query (Recall@k)")
    add_catalog_options(s)
    s.add_argument(
        "--lexical",
        action="store_true",
        help="build a BM25 index too and report dense + BM25 beside dense alone",
    )
    _output_options(s)
    # BEIR's corpus layout; title and text joined by a space as BEIR and MTEB embed them.
    s.set_defaults(func=cmd_eval_search, id_column="_id", text="{title} {text}", metadata="title")


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--factory", default="auto", help="FAISS factory for the index built here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--report", default=None, metavar="DIR", help="write report.md and PNG plots to DIR"
    )
