"""Operations routes: liveness, readiness, metrics and the served manifest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST

from api.auth import bearer_token, read_allowed, require_read
from api.errors import ERROR_RESPONSES
from api.models import Health, Ready
from api.routes import RecommenderDep
from engine.writes import pending_changes

# Probes stay open: an orchestrator must reach them without a key.
probes = APIRouter(tags=["ops"])
ops = APIRouter(tags=["ops"], dependencies=[Depends(require_read)], responses=ERROR_RESPONSES)


@probes.get("/health", response_model=Health)
def health(request: Request) -> Health:
    """Alive. With the read key (or none configured): the served index, reloads, compactions."""
    state = request.app.state
    # The key is optional here (a probe has none), so it is not declared as required security.
    token = bearer_token(request)
    credentials = (
        HTTPAuthorizationCredentials(scheme="Bearer", credentials=token) if token else None
    )
    if not read_allowed(request, credentials):
        return Health(status="ok")
    bundle = state.recommender.bundle
    return Health(
        status="ok",
        index=bundle.manifest.name,
        version=bundle.manifest.version,
        items=bundle.live_count,
        reloads=state.reloader.reloads,
        reload_failures=state.reloader.failures,
        last_reload_error=state.reloader.last_error,
        pending_updates=pending_changes(bundle),
        compactions=state.writer.compactions,
        last_compaction_error=state.writer.last_compaction_error,
    )


@probes.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
def ready(request: Request) -> Any:
    """200 once a verified bundle is loaded (and the model warmed up); 503 before, and while
    shutting down, so a load balancer stops sending requests."""
    state = request.app.state
    recommender = getattr(state, "recommender", None)
    if recommender is None or getattr(state, "shutting_down", False):
        return JSONResponse(Ready(ready=False).model_dump(), status_code=503)
    return Ready(ready=True, version=recommender.bundle.manifest.version)


@ops.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latency per route and status, the index, reloads."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@ops.get("/index")
def index_manifest(recommender: RecommenderDep) -> dict[str, Any]:
    """The loaded bundle's manifest."""
    return recommender.bundle.manifest.to_dict()
