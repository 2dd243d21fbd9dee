"""``vecrec serve``: the HTTP app under uvicorn, in one process or in several workers.

Workers are separate processes, each with its own model; the bundle's index and vectors are
memory-mapped (engine/bundle.py), so its pages are held once in the page cache for all of them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from api import cli_perf
from api.cli_common import resolve_index
from engine import VecrecError
from engine.bundle import resolve_bundle_dir


def register(sub: Any) -> None:
    sv = sub.add_parser("serve", help="serve an index over HTTP")
    sv.add_argument("--index", default=None, help="bundle path or index name")
    sv.add_argument(
        "--sample",
        action="store_true",
        help="serve the MovieLens sample, building it first if missing",
    )
    sv.add_argument("--host", default=None, help="default 127.0.0.1 (VECREC_HOST)")
    sv.add_argument("--port", type=int, default=None, help="default 8000 (VECREC_PORT)")
    sv.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes (default 1): one per core to use; each loads the model",
    )
    cli_perf.add_query_options(sv, search_params=False)
    sv.set_defaults(func=cmd_serve)


def _positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app, load_recommender
    from api.settings import Settings

    index = _served_index(args)
    overrides: dict[str, Any] = {"index": index, "host": args.host, "port": args.port}
    overrides.update(backend=args.backend, gpu=args.gpu or None)
    overrides["allow_backend_mismatch"] = args.allow_backend_mismatch or None
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = Settings(**given)
    # Load (and verify) before binding the port, so a bad bundle is one line, not a traceback.
    recommender = load_recommender(settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    url = f"http://{settings.host}:{settings.port}"
    workers = f" with {args.workers} workers" if args.workers > 1 else ""
    print(
        f"serving {recommender.bundle.path} on {url}{workers} (docs at {url}/docs)",
        file=sys.stderr,
    )
    if args.workers == 1:
        app = create_app(settings, recommender)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
        return 0
    # Each worker builds its own app from the environment; this process only supervises them.
    del recommender
    gc.collect()
    os.environ.update({f"VECREC_{k.upper()}": str(v) for k, v in given.items()})
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_level="info",
    )
    return 0


def _served_index(args: argparse.Namespace) -> Path:
    indexes_dir = Path(args.indexes_dir)
    if not args.sample:
        return resolve_index(args.index, indexes_dir)
    from indexer.build import build
    from indexer.sample import SAMPLE_NAME, served_sample_config

    target = indexes_dir / SAMPLE_NAME
    try:
        resolve_bundle_dir(target)
    except VecrecError:
        print(f"building the sample index at {target} (first run only)", file=sys.stderr)
        build(served_sample_config(indexes_dir))
    return target
