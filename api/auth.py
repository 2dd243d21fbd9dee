"""The admin key: ``Authorization: Bearer <VECREC_API_KEY>`` on every ``/admin`` route."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.settings import Settings

# auto_error=False: a missing header must get our 401 (with WWW-Authenticate), not FastAPI's.
bearer = HTTPBearer(auto_error=False, description="the server's VECREC_API_KEY")


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Admit the request only with the configured key; no key configured means no admin at all.

    Runs before anything else the route does, so a refused caller learns nothing about the
    server's indexes or items.
    """
    settings: Settings = request.app.state.settings
    if settings.api_key is None or not settings.api_key.get_secret_value():
        # Closed, not open: a forgotten setting must never expose reloads to anyone.
        raise HTTPException(403, "admin endpoints are disabled: set VECREC_API_KEY")
    expected = settings.api_key.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    # Constant time, so response timing does not reveal how much of a guessed key was right.
    if not (given and hmac.compare_digest(given, expected)):
        raise HTTPException(
            401, "a valid admin key is required", headers={"WWW-Authenticate": "Bearer"}
        )


def bearer_token(request: Request) -> str:
    """The request's bearer token ("" when none), for routes that do not demand one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def read_allowed(request: Request, credentials: HTTPAuthorizationCredentials | None) -> bool:
    """True without a configured read key, or with it (or the admin key) as the bearer token.

    Every configured key is compared in constant time, so timing tells nothing about which one
    nearly matched.
    """
    settings: Settings = request.app.state.settings
    read_key = settings.read_api_key.get_secret_value() if settings.read_api_key else ""
    if not read_key:
        return True
    admin_key = settings.api_key.get_secret_value() if settings.api_key else ""
    given = credentials.credentials.encode() if credentials is not None else b""
    matched = [hmac.compare_digest(given, key.encode()) for key in (read_key, admin_key) if key]
    return bool(given) and any(matched)


async def require_read(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Query routes with ``VECREC_READ_API_KEY`` set need it (or the admin key). Checked before
    the route looks anything up, so a refused caller cannot tell whether an item exists."""
    if not read_allowed(request, credentials):
        raise HTTPException(
            401, "a valid API key is required", headers={"WWW-Authenticate": "Bearer"}
        )
