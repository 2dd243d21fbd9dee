"""Build options of the hybrid signals (issue 9): collaborative vectors and the BM25 index."""

from __future__ import annotations

import argparse
from typing import Any


def add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-collaborative",
        action="store_true",
        help="do not learn collaborative (ALS) item vectors from --interactions "
        "(learnt by default when interactions are given; queries then default to hybrid mode)",
    )
    parser.add_argument(
        "--cf-positive-threshold",
        type=float,
        default=None,
        metavar="W",
        help="collaborative vectors learn from interactions weighing at least W (with "
        "--rating-column; e.g. 4 on a 5-star scale); default: every interaction",
    )
    parser.add_argument(
        "--lexical",
        action="store_true",
        help="also build a BM25 index of the item texts (search and interests fuse it with "
        "the dense vectors)",
    )


def build_fields(args: argparse.Namespace) -> dict[str, Any]:
    """BuildConfig fields of these options."""
    return {
        "collaborative": bool(args.interactions) and not args.no_collaborative,
        "lexical": args.lexical,
        "cf_positive_threshold": args.cf_positive_threshold,
    }
