"""Where a route's engine call runs: on the event loop when it is light, else on a thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import faiss
from fastapi import Request
from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
R = TypeVar("R")


async def run_engine(
    request: Request, light: bool, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """``call``, the route's engine call (and the answer's assembly): on the event loop when
    the query is ``light`` (engine/query_cost.py), else on the thread pool.

    A light query costs less than the hand-off to a thread: 300-400 ``/recommend`` requests/s
    through the pool against 440-610 inline (2 vCPU, 8 clients). A heavy one (an embedding, a
    large Flat scan, a cross-encoder) must not hold the loop, and frees the GIL as it works.
    The routes are ``async`` either way: a plain ``def`` route costs FastAPI two hops per
    request, one for the route and one to validate its answer.
    """
    threads = request.app.state.settings.faiss_threads

    def run() -> R:
        # OpenMP's thread count is a per-thread setting: the one made when the bundle loaded
        # binds only the loading thread, and the pool's threads ran FAISS's heaps on a team of
        # one thread per core, spin-waiting between calls.
        faiss.omp_set_num_threads(threads)
        return call(*args, **kwargs)

    if light:
        return run()
    return await run_in_threadpool(run)
