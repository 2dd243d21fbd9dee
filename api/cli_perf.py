"""CLI options of the performance features: embedding backend, GPU, autotuning, search params."""

from __future__ import annotations

import argparse
from typing import Any

from engine import InvalidArgument
from engine.embedder import BACKENDS
from engine.manifest import Manifest
from engine.search_params import LIMITS as SEARCH_LIMITS
from engine.search_params import check_search_params


def unit_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def add_build_options(parser: argparse.ArgumentParser) -> None:
    """``index build``: --backend, --target-recall, --gpu."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="embedding backend: torch, onnx (fp32) or onnx-int8; recorded in the manifest",
    )
    parser.add_argument(
        "--target-recall",
        type=unit_fraction,
        default=0.95,
        help="--factory auto: recall@10 the autotuned index must reach (default 0.95)",
    )
    parser.add_argument(
        "--gpu", action="store_true", help="embed on CUDA and build IVF/Flat on the GPU"
    )


def add_query_options(parser: argparse.ArgumentParser, *, search_params: bool = True) -> None:
    """Query commands and ``serve``: --backend, --allow-backend-mismatch, --gpu[, --search-param]."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="query embedding backend (default: the one the index was built with)",
    )
    parser.add_argument(
        "--allow-backend-mismatch",
        action="store_true",
        help="embed queries with a backend incompatible with the index's anyway",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="embed queries on CUDA and search IVF indexes on the GPU (k > 2048 and filtered "
        "searches fall back to the CPU index)",
    )
    if search_params:
        parser.add_argument(
            "--search-param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override the index's tuned search parameter: efSearch=N or nprobe=N",
        )


def parse_search_params(values: list[str]) -> dict[str, int]:
    params: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or name not in SEARCH_LIMITS or not number.isdigit() or int(number) < 1:
            raise InvalidArgument(
                f"--search-param {value!r} must be efSearch=N or nprobe=N with N >= 1",
                field="search_param",
            )
        params[name] = int(number)
    try:  # the same bounds as a request's search_params
        return check_search_params(params, field="search_param")
    except InvalidArgument as exc:
        raise InvalidArgument(
            str(exc).replace("search_param.", "--search-param "), field="search_param"
        ) from exc


def recommender_config(args: argparse.Namespace) -> Any:
    """The RecommenderConfig a query command's options ask for."""
    from engine import RecommenderConfig

    if args.gpu:
        from engine.gpu import require_gpu

        require_gpu()
    return RecommenderConfig(
        backend=args.backend,
        allow_backend_mismatch=args.allow_backend_mismatch,
        device="cuda" if args.gpu else "cpu",
        search_params=parse_search_params(getattr(args, "search_param", [])),
    )


def describe_autotune(manifest: Manifest) -> str | None:
    """One line on the autotuned setting, or None when the index was not autotuned."""
    tuned = manifest.index.autotune
    if not tuned:
        return None
    params = ", ".join(f"{k}={v}" for k, v in manifest.index.search_params.items()) or "-"
    factories = sorted({str(t["factory"]) for t in tuned.get("trials", [])})
    return (
        f"autotune   {manifest.index.factory} {params}: recall@{tuned['k']} {tuned['recall']:.3f} "
        f"(target {tuned['target_recall']}), {tuned['ms_per_query']:.3f} ms/query; measured "
        f"{len(tuned.get('trials', []))} settings of {', '.join(factories)}"
    )
