"""HTTP routes: request model → one engine call → response model."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import TypeAdapter, ValidationError

from api.auth import require_admin
from api.models import (
    FilterSpec,
    Health,
    Item,
    RecommendRequest,
    ReloadResponse,
    ResultsResponse,
    SearchRequest,
)
from api.reload import Reloader
from engine import Filter, InvalidArgument, Recommender

router = APIRouter()
# The key check sits on the router so no future admin route can be added without it.
admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def get_recommender(request: Request) -> Recommender:
    recommender: Recommender = request.app.state.recommender
    return recommender


def get_reloader(request: Request) -> Reloader:
    reloader: Reloader = request.app.state.reloader
    return reloader


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
_FILTERS = TypeAdapter(list[FilterSpec])


def parse_filters(raw: str | None) -> list[Filter]:
    """Filters from a query string parameter holding a JSON list of filter objects."""
    if not raw:
        return []
    try:
        specs = _FILTERS.validate_python(json.loads(raw))
    except (json.JSONDecodeError, ValidationError) as exc:
        message = str(exc).splitlines()[0]
        raise InvalidArgument(
            f"filters must be a JSON list of filter objects: {message}", field="filters"
        ) from exc
    return [spec.to_filter() for spec in specs]


@router.post("/recommend", response_model=ResultsResponse, tags=["recommend"])
def recommend(body: RecommendRequest, recommender: RecommenderDep) -> ResultsResponse:
    """Recommendations for a user from their history and/or interests."""
    results = recommender.recommend(
        body.events(),
        body.interests,
        body.k,
        exclude=[str(i) for i in body.exclude],
        filters=[f.to_filter() for f in body.filters],
        exclude_seen=body.exclude_seen,
        options=body.options(recommender.config.options),
    )
    return ResultsResponse.of(results)


@router.post("/search", response_model=ResultsResponse, tags=["search"])
def search(body: SearchRequest, recommender: RecommenderDep) -> ResultsResponse:
    """Items nearest in meaning to free text."""
    results = recommender.search(
        body.text,
        body.k,
        exclude=[str(i) for i in body.exclude],
        filters=[f.to_filter() for f in body.filters],
        options=body.options(recommender.config.options),
    )
    return ResultsResponse.of(results)


@router.get("/items/{item_id}", response_model=Item, tags=["items"])
def get_item(item_id: str, recommender: RecommenderDep) -> Item:
    """One item of the catalogue."""
    return Item.of(recommender.get(item_id))


@router.get("/items/{item_id}/similar", response_model=ResultsResponse, tags=["items"])
def similar(
    item_id: str,
    recommender: RecommenderDep,
    k: Annotated[int, Query(ge=1, description="how many items")] = 10,
    filters: Annotated[
        str | None, Query(description='JSON list, e.g. [{"field":"genres","eq":"Comedy"}]')
    ] = None,
) -> ResultsResponse:
    """Items nearest to an item."""
    return ResultsResponse.of(recommender.similar(item_id, k, filters=parse_filters(filters)))


@router.get("/health", response_model=Health, tags=["ops"])
def health(recommender: RecommenderDep, reloader: ReloaderDep) -> Health:
    """Liveness, which bundle is loaded, and how hot reloads went."""
    manifest = recommender.bundle.manifest
    return Health(
        status="ok",
        index=manifest.name,
        version=manifest.version,
        items=len(recommender.bundle),
        reloads=reloader.reloads,
        reload_failures=reloader.failures,
        last_reload_error=reloader.last_error,
    )


@router.get("/index", tags=["ops"])
def index_manifest(recommender: RecommenderDep) -> dict[str, Any]:
    """The loaded bundle's manifest."""
    return recommender.bundle.manifest.to_dict()


@admin.post("/reload", response_model=ReloadResponse)
async def reload(
    request: Request,
    reloader: ReloaderDep,
    force: Annotated[bool, Query(description="reload even if CURRENT names the served version")] = (
        False
    ),
) -> ReloadResponse:
    """Serve the version ``CURRENT`` now names; a bundle that fails verification is refused."""
    outcome = await reloader.reload(request.app.state, force=force)
    return ReloadResponse(
        reloaded=outcome.reloaded,
        previous=outcome.previous,
        version=outcome.version,
        items=outcome.items,
    )
