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

from api import errors, routes
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

log = logging.getLogger("vecrec.api")


def load_recommender(settings: Settings, previous: Recommender | None = None) -> Recommender:
    """Open the configured bundle with the configured limits and model.

    ``previous`` is the recommender a hot reload replaces: its loaded model and cross-encoder
    are reused when the new bundle was built with the same model, instead of loading them twice.
    """
    faiss.omp_set_num_threads(settings.faiss_threads)
    bundle = Bundle.load(settings.index)
    same_model = previous is not None and (
        settings.model is not None or previous.bundle.manifest.model == bundle.manifest.model
    )
    if previous is not None and same_model:
        embedder: Embedder | None = previous.embedder
        reranker = previous.ranker.text_reranker
    else:
        embedder = (
            load_embedder(settings.model, threads=settings.embed_threads)
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
    )
    if settings.warm_up:
        recommender.warm_up()
    return recommender


def create_app(settings: Settings | None = None, recommender: Recommender | None = None) -> FastAPI:
    """The vecrec HTTP app. Give ``recommender`` to serve one already loaded (tests, embedding)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.recommender = recommender or load_recommender(settings)
        manifest = app.state.recommender.bundle.manifest
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
    app.state.settings = settings
    app.state.reloader = Reloader(
        settings.index, lambda: load_recommender(settings, app.state.recommender)
    )
    app.state.writer = Writer(app.state.reloader, settings.compaction_policy())
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(routes.writes)
    app.include_router(routes.admin)
    return app
