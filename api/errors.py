"""Domain errors → HTTP status codes, in one place. Bodies are ``{"detail", "field", "type"}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.models import ErrorBody
from engine.errors import (
    BundleError,
    CatalogError,
    EmbedderError,
    IndexLocked,
    InvalidArgument,
    NoUsableInput,
    UnknownItem,
    VecrecError,
)

log = logging.getLogger("vecrec.api")

# First match wins: order from specific to general.
STATUS_OF: tuple[tuple[type[VecrecError], int], ...] = (
    (UnknownItem, 404),
    (IndexLocked, 409),
    (InvalidArgument, 422),
    (NoUsableInput, 422),
    (CatalogError, 400),
    (BundleError, 503),
    (EmbedderError, 503),
    (VecrecError, 400),
)

# The error statuses every route may answer, documented in the OpenAPI schema with the one body
# they all share (FastAPI's default 422 schema would be wrong).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "bad input the schema cannot express"),
        (401, "a key is required"),
        (403, "the route is disabled"),
        (404, "unknown item"),
        (409, "another writer holds the index"),
        (413, "the body is too large"),
        (422, "invalid field (named in `field`)"),
        (503, "the bundle or model cannot be used"),
        (504, "the request took too long"),
    )
}

# Request locations FastAPI prefixes to field paths; the client knows its own field names.
_LOCATIONS = {"body", "query", "path", "header"}


def status_for(error: VecrecError) -> int:
    return next(status for kind, status in STATUS_OF if isinstance(error, kind))


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("body", "history", 0, "weight")`` → ``"history[0].weight"``."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _body(detail: str, field: str | None, kind: str) -> dict[str, str | None]:
    return {"detail": detail, "field": field, "type": kind}


def install(app: FastAPI) -> None:
    """Register the handlers that keep every error a short JSON body, never a traceback."""

    @app.exception_handler(VecrecError)
    async def _domain(_: Request, exc: VecrecError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("service error: %s", exc)
        detail = exc.message
        if exc.field and not detail.startswith(exc.field):
            detail = f"{exc.field}: {detail}"
        return JSONResponse(_body(detail, exc.field, type(exc).__name__), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = field_path(tuple(first.get("loc", ("body",))))
        # Pydantic's "Value error, ..." prefix is noise to an API client.
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        body = _body(f"{field}: {message}", field, "ValidationError")
        body["errors"] = [  # type: ignore[assignment]
            {"field": field_path(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
            for e in errors
        ]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _body(str(exc.detail), None, "HTTPError"),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
