"""Query routes run their engine call on the thread pool with the configured FAISS threads."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import faiss

from api.dispatch import run_engine


def test_the_pool_thread_runs_faiss_with_the_configured_thread_count() -> None:
    # OpenMP's setting is per thread: a value set on the loading thread does not reach the pool.
    faiss.omp_set_num_threads(1)
    request: Any = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(faiss_threads=3)))
    )

    def observe() -> tuple[int, int]:
        return faiss.omp_get_max_threads(), threading.get_ident()

    threads, ident = asyncio.run(run_engine(request, False, observe))
    assert threads == 3
    assert ident != threading.get_ident()  # it ran off the event loop's thread
    assert faiss.omp_get_max_threads() == 1  # and left this thread's setting alone


def test_a_light_call_runs_on_the_event_loop_thread_with_the_same_setting() -> None:
    request: Any = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(faiss_threads=3)))
    )

    async def main() -> tuple[int, int, int]:
        threads, ident = await run_engine(request, True, lambda: _observe())
        return threads, ident, threading.get_ident()

    threads, ident, loop_ident = asyncio.run(main())
    assert threads == 3 and ident == loop_ident
    faiss.omp_set_num_threads(1)


def _observe() -> tuple[int, int]:
    return faiss.omp_get_max_threads(), threading.get_ident()
