"""HTTP routes: request model → one engine call → response model."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastPath
from pydantic import TypeAdapter, ValidationError

from api.auth import require_admin, require_read
from api.dispatch import run_engine
from api.errors import ERROR_RESPONSES
from api.models import (
    BatchRequest,
    CompactResponse,
    FilterSpec,
    Item,
    ItemWrite,
    RecommendRequest,
    ReloadResponse,
    ResultsResponse,
    SearchParamsSpec,
    SearchRequest,
    Truncated,
    WriteResponse,
)
from api.reload import Reloader
from api.writes import WriteOutcome, Writer
from engine import Filter, InvalidArgument, Recommender, UnknownItem
from engine.changes import MAX_ID_CHARS
from engine.query_cost import is_light, recommend_is_light
from engine.results import QueryOptions
from engine.search_params import LIMITS as SEARCH_LIMITS
from engine.tokens import TokenCounter
from engine.writes import pending_changes

# The key checks sit on the routers so no future route can be added without them.
router = APIRouter(dependencies=[Depends(require_read)], responses=ERROR_RESPONSES)
admin = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=ERROR_RESPONSES,
)
writes = APIRouter(tags=["items"], dependencies=[Depends(require_admin)], responses=ERROR_RESPONSES)


# The dependencies are ``async`` though they never wait: FastAPI runs a plain ``def`` dependency
# in its thread pool, one hop per dependency per request, which costs more than the lookup.
async def get_recommender(request: Request) -> Recommender:
    recommender: Recommender = request.app.state.recommender
    return recommender


async def get_reloader(request: Request) -> Reloader:
    reloader: Reloader = request.app.state.reloader
    return reloader


async def get_writer(request: Request) -> Writer:
    writer: Writer = request.app.state.writer
    return writer


RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
WriterDep = Annotated[Writer, Depends(get_writer)]
_FILTERS = TypeAdapter(list[FilterSpec])
# Ids are printable: the schema says so, so clients and fuzzers learn it before sending one.
PathId = Annotated[
    str, FastPath(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")
]


def truncated(request: Request, recommender: Recommender, **texts: str | None) -> list[Truncated]:
    """The texts of a request that run past the model's window, with their token counts."""
    model = recommender.bundle.manifest.model
    window = model.max_seq_length
    if window is None:
        return []
    counter: TokenCounter = request.app.state.tokens
    spec = request.app.state.settings.model or model.spec
    out = []
    for field, text in texts.items():
        tokens = counter.count(spec, text, window) if text else None
        if tokens is not None and tokens > window:
            out.append(Truncated(field=field, tokens=tokens, limit=window))
    return out


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
async def recommend(
    body: RecommendRequest, request: Request, recommender: RecommenderDep
) -> ResultsResponse:
    """Recommendations for a user from their history and/or interests."""
    options = body.options(recommender.config.options)
    light = recommend_is_light(
        recommender,
        options,
        k=body.k,
        interests=body.interests,
        history_size=len(body.history),
        filters=len(body.filters),
    )
    return await run_engine(request, light, _recommend, body, options, request, recommender)


def _recommend(
    body: RecommendRequest, options: QueryOptions, request: Request, recommender: Recommender
) -> ResultsResponse:
    results = recommender.recommend(
        body.events(),
        body.interests,
        body.k,
        exclude=[str(i) for i in body.exclude],
        filters=[f.to_filter() for f in body.filters],
        exclude_seen=body.exclude_seen,
        options=options,
    )
    return ResultsResponse.of(results, truncated(request, recommender, interests=body.interests))


@router.post("/search", response_model=ResultsResponse, tags=["search"])
async def search(
    body: SearchRequest, request: Request, recommender: RecommenderDep
) -> ResultsResponse:
    """Items nearest in meaning to free text."""
    return await run_engine(request, False, _search, body, request, recommender)


def _search(body: SearchRequest, request: Request, recommender: Recommender) -> ResultsResponse:
    results = recommender.search(
        body.text,
        body.k,
        exclude=[str(i) for i in body.exclude],
        filters=[f.to_filter() for f in body.filters],
        options=body.options(recommender.config.options),
    )
    return ResultsResponse.of(results, truncated(request, recommender, text=body.text))


@router.get("/items/{item_id}", response_model=Item, tags=["items"])
async def get_item(item_id: PathId, recommender: RecommenderDep) -> Item:
    """One item of the catalogue."""
    return Item.of(recommender.get(item_id))  # a dictionary lookup: no thread needed


@router.get("/items/{item_id}/similar", response_model=ResultsResponse, tags=["items"])
async def similar(
    item_id: PathId,
    recommender: RecommenderDep,
    request: Request,
    k: Annotated[int, Query(ge=1, description="how many items")] = 10,
    filters: Annotated[
        str | None, Query(description='JSON list, e.g. [{"field":"genres","eq":"Comedy"}]')
    ] = None,
    ef_search: Annotated[
        int | None, Query(ge=1, le=SEARCH_LIMITS["efSearch"], description="HNSW search effort")
    ] = None,
    nprobe: Annotated[
        int | None, Query(ge=1, le=SEARCH_LIMITS["nprobe"], description="IVF lists scanned")
    ] = None,
) -> ResultsResponse:
    """Items nearest to an item."""
    options = recommender.config.options
    params = SearchParamsSpec(ef_search=ef_search, nprobe=nprobe).to_params()
    if params is not None:
        options = dataclasses.replace(options, search_params=params)
    parsed = parse_filters(filters)
    light = is_light(recommender, options, k=k, filters=len(parsed))
    results = await run_engine(
        request, light, recommender.similar, item_id, k, filters=parsed, options=options
    )
    return ResultsResponse.of(results)


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


def _written(outcome: WriteOutcome) -> WriteResponse:
    bundle, prepared = outcome.bundle, outcome.prepared
    return WriteResponse(
        version=bundle.manifest.version,
        seq=bundle.log.last_seq if prepared.changes else 0,
        items=bundle.live_count,
        created=list(prepared.created),
        replaced=list(prepared.replaced),
        deleted=list(prepared.deleted),
        missing=list(prepared.missing),
        pending_updates=pending_changes(bundle),
    )


def _check_batch_size(request: Request, count: int) -> None:
    limit = request.app.state.settings.max_batch
    if count > limit:
        raise InvalidArgument(
            f"the batch holds {count} changes; the limit is {limit} (VECREC_MAX_BATCH)",
            field="upsert",
        )


def _check_text(request: Request, text: str | None, field: str) -> None:
    limit = request.app.state.settings.max_text_chars
    if text is not None and len(text) > limit:
        raise InvalidArgument(
            f"{field} is {len(text)} characters; the limit is {limit}", field=field
        )


@writes.put("/items/{item_id}", response_model=WriteResponse)
async def put_item(
    item_id: PathId, body: ItemWrite, request: Request, writer: WriterDep
) -> WriteResponse:
    """Insert or replace one item; searchable, and durable, when the answer comes."""
    _check_text(request, body.text, "text")
    outcome = await writer.write(request.app.state, [body.to_fields(item_id)], [], prefix="")
    return _written(outcome)


@writes.delete("/items/{item_id}", response_model=WriteResponse)
async def delete_item(item_id: PathId, request: Request, writer: WriterDep) -> WriteResponse:
    """Delete one item: it is in no answer from the moment this returns."""
    outcome = await writer.write(request.app.state, [], [item_id], prefix="")
    if outcome.prepared.missing:
        raise UnknownItem(item_id)
    return _written(outcome)


@writes.post("/items:batch", response_model=WriteResponse)
async def write_batch(body: BatchRequest, request: Request, writer: WriterDep) -> WriteResponse:
    """Upserts and deletes as one durable batch; unknown ids to delete are listed as missing."""
    _check_batch_size(request, len(body.upsert) + len(body.delete))
    for position, item in enumerate(body.upsert):
        _check_text(request, item.text, f"upsert[{position}].text")
    upserts = [item.to_fields(item.id) for item in body.upsert]
    outcome = await writer.write(request.app.state, upserts, [str(i) for i in body.delete])
    return _written(outcome)


@admin.post("/compact", response_model=CompactResponse)
async def compact(request: Request, writer: WriterDep) -> CompactResponse:
    """Fold live updates into a new version now, and serve it."""
    result = await writer.compact(request.app.state)
    if result is None:
        bundle = request.app.state.recommender.bundle
        return CompactResponse(
            compacted=False, version=bundle.manifest.version, items=bundle.live_count
        )
    return CompactResponse(
        compacted=True,
        version=result.path.name,
        items=result.items,
        folded=result.folded,
        carried=result.carried,
    )
