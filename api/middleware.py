"""Per-request plumbing, as one plain ASGI middleware (no per-request task or body copy):

* a request id: the client's ``X-Request-ID`` when it is a short token, else a new one; echoed
  in the response header and in the access log line;
* a body limit: a declared or streamed body over ``max_body_bytes`` is answered 413 before the
  app parses it;
* a timeout: a request not answered within ``request_timeout`` seconds gets 504;
* metrics and one access-log line per request, by route template, never by raw path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from api.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
access_log = logging.getLogger("vecrec.access")


class BodyTooLarge(HTTPException):
    """Raised while the app reads a streamed body past the limit: FastAPI passes HTTP errors
    through its body parsing, so the client gets this 413, not a parse error."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: the request body is over the limit of {limit} bytes")


def _error(status: int, detail: str, field: str | None, kind: str) -> tuple[int, bytes]:
    body = {"detail": detail, "field": field, "type": kind}
    return status, json.dumps(body).encode()


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        timeout: float,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        state = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        declared = headers.get("content-length", "")
        try:
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            # A deadline on this task, not ``wait_for``: that runs the app in a new task, one
            # more task and context copy per request.
            async with asyncio.timeout(self.timeout):
                await self.app(scope, receive_limited, send_with_id)
        except BodyTooLarge:
            if not state["started"]:
                await self._reply(
                    send_with_id,
                    *_error(
                        413,
                        f"body: the request body is over the limit of {self.max_body_bytes} bytes",
                        "body",
                        "PayloadTooLarge",
                    ),
                )
        except TimeoutError:
            if not state["started"]:
                await self._reply(
                    send_with_id,
                    *_error(
                        504,
                        f"the request took longer than the limit of {self.timeout:g} s",
                        None,
                        "Timeout",
                    ),
                )
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            status = int(state["status"])
            self.metrics.observe(template, scope["method"], status, seconds)
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )

    @staticmethod
    async def _reply(send: Send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
