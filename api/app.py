"""The FastAPI application. Nothing is loaded at import time: ``create_app()`` builds the app and
its lifespan loads (and verifies) the bundle once, before the first request.

Run with ``vecrec serve`` or ``uvicorn api.app:create_app --factory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import faiss
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from threadpoolctl import threadpool_limits

from api import errors, logs, routes, routes_ops
from api.metrics import Metrics
from api.middleware import REQUEST_ID_HEADER, RequestMiddleware
from api.reload import Reloader
from api.settings import Settings
from api.writes import Writer
from engine import (
    Bundle,
    CrossEncoderReranker,
    Embedder,
    Recommender,
    __version__,
    load_embedder,
)
from engine.query_cache import QueryEmbeddingCache
from engine.tokens import TokenCounter

log = logging.getLogger("vecrec.api")


def load_recommender(settings: Settings, previous: Recommender | None = None) -> Recommender:
    """Open the configured bundle with the configured limits and model.

    ``previous`` is the recommender a hot reload replaces: its loaded model and cross-encoder
    are reused when the new bundle was built with the same model, instead of loading them twice.
    """
    faiss.omp_set_num_threads(settings.faiss_threads)
    # numpy's BLAS (exact scans, re-scoring) likewise: with one thread per core, concurrent
    # requests oversubscribe the cores (8 clients on 2 vCPU: 12 req/s, against 61 with one).
    threadpool_limits(settings.blas_threads, user_api="blas")
    bundle = Bundle.load(settings.index)
    same_model = previous is not None and (
        settings.model is not None or previous.bundle.manifest.model == bundle.manifest.model
    )
    if previous is not None and same_model:
        embedder: Embedder | None = previous.embedder
        reranker = previous.ranker.text_reranker
        cache = previous.query_cache
    else:
        observer = previous.query_cache.on_embed if previous and previous.query_cache else None
        cache = QueryEmbeddingCache(settings.query_cache_size, on_embed=observer)
        embedder = (
            load_embedder(
                settings.model,
                threads=settings.embed_threads,
                backend=settings.backend or "torch",
                device="cuda" if settings.gpu else "cpu",
            )
            if settings.model
            else None
        )
        reranker = CrossEncoderReranker(settings.cross_encoder) if settings.cross_encoder else None
    recommender = Recommender(
        bundle,
        embedder,
        settings.recommender_config(),
        embed_threads=settings.embed_threads,
        text_reranker=reranker,
        query_cache=cache,
    )
    if settings.warm_up:
        recommender.warm_up()
    return recommender


def create_app(settings: Settings | None = None, recommender: Recommender | None = None) -> FastAPI:
    """The vecrec HTTP app. Give ``recommender`` to serve one already loaded (tests, embedding)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = recommender or load_recommender(settings)
        if served.query_cache is None:
            served.query_cache = QueryEmbeddingCache(settings.query_cache_size)
        served.query_cache.on_embed = app.state.metrics.embedding.observe
        app.state.recommender = served
        manifest = served.bundle.manifest
        log.info(
            "serving %s version %s (%d items)", manifest.name, manifest.version, manifest.item_count
        )
        poller = None
        if settings.reload_interval > 0:
            poller = asyncio.create_task(
                app.state.reloader.poll(app.state, settings.reload_interval)
            )
        try:
            yield
        finally:
            app.state.shutting_down = True
            # Uvicorn runs this after the requests in flight have been answered.
            log.info("shutting down: requests in flight finished")
            await app.state.writer.close()
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller

    app = FastAPI(
        title="vecrec",
        version=__version__,
        description="Recommendations, similar items and search by meaning over a FAISS index.",
        lifespan=lifespan,
    )
    logs.configure(settings.log_format, settings.log_level)
    app.state.settings = settings
    app.state.shutting_down = False
    app.state.metrics = Metrics(app.state)
    app.state.tokens = TokenCounter()
    app.state.reloader = Reloader(
        settings.index, lambda: load_recommender(settings, app.state.recommender)
    )
    app.state.writer = Writer(app.state.reloader, settings.compaction_policy())
    errors.install(app)
    app.include_router(routes_ops.probes)
    app.include_router(routes_ops.ops)
    app.include_router(routes.router)
    app.include_router(routes.writes)
    app.include_router(routes.admin)
    if settings.cors_origins:  # closed unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
        )
    app.add_middleware(
        RequestMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_body_bytes,
        timeout=settings.request_timeout,
    )
    return app
