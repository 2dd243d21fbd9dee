"""Query routes run their engine call on the thread pool with the configured FAISS threads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faiss
import pytest

from api.dispatch import run_engine


def test_the_pool_thread_runs_faiss_with_the_configured_thread_count() -> None:
    # OpenMP's setting is per thread: a value set on the loading thread does not reach the pool.
    faiss.omp_set_num_threads(1)
    request = _request(faiss_threads=3)

    threads, ident = asyncio.run(run_engine(request, False, _observe))
    assert threads == 3
    assert ident != threading.get_ident()  # it ran off the event loop's thread
    assert faiss.omp_get_max_threads() == 1  # and left this thread's setting alone


def test_a_light_call_runs_on_the_event_loop_thread_with_the_same_setting() -> None:
    request = _request(faiss_threads=3)

    async def main() -> tuple[int, int, int]:
        threads, ident = await run_engine(request, True, _observe)
        return threads, ident, threading.get_ident()

    threads, ident, loop_ident = asyncio.run(main())
    assert threads == 3 and ident == loop_ident
    faiss.omp_set_num_threads(1)


def _observe() -> tuple[int, int]:
    return faiss.omp_get_max_threads(), threading.get_ident()


def _request(faiss_threads: int) -> Any:
    """What :func:`run_engine` reads of a request: the app's settings."""
    settings = SimpleNamespace(faiss_threads=faiss_threads)
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(settings=settings)))


def test_routes_answer_light_queries_inline_and_text_queries_on_the_pool(
    hash_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings
    from engine import Recommender

    threads: list[str] = []
    original = Recommender.recommend

    def recording(self: Recommender, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Recommender, "recommend", recording)
    with TestClient(create_app(Settings(index=hash_index))) as client:
        ids = [item["id"] for item in client.post("/recommend", json={"k": 3}).json()["items"]]
        light = {"history": ids, "k": 5, "strategy": "mean"}
        assert client.post("/recommend", json=light).status_code == 200
        heavy = {**light, "interests": "space adventure"}
        assert client.post("/recommend", json=heavy).status_code == 200
        long_answer = {**light, "k": 101}  # past the light limit on answer length
        assert client.post("/recommend", json=long_answer).status_code == 200
    pool = [name.startswith("AnyIO worker thread") for name in threads]
    assert pool == [False, False, True, True], threads
