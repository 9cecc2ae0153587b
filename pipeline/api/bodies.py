"""Request bodies: the size limit every request is held to, and reading a JSON body into one clear 400.

The routes read their bodies themselves instead of declaring pydantic body parameters, so that a bad body
is one 400 in the API's error shape (with the parser's message) and never FastAPI's per-field 422.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import api_config
from .edge import ApiError, has_lone_surrogate
from .errors import error_body
from .metrics import REQUESTS_REFUSED


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``limit`` bytes, by Content-Length and by bytes actually read.

    Checking only the header is not enough (chunked uploads have none, and a client can lie),
    so the receive channel is counted too and the read is cut off as soon as the limit is passed.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "invalid Content-Length")
                    return
                if declared > self.limit:
                    await self._refuse(send, 413, self._message())
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, 413, self._message())

    def _message(self) -> str:
        return f"request body larger than {self.limit} bytes"

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        REQUESTS_REFUSED.labels("too_large" if status == 413 else "bad_request").inc()
        body = json.dumps(error_body(status, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


async def json_body(request: Request) -> Any:
    """The parsed JSON body, or an ApiError 400 that says what is wrong with it (413 if it is too large)."""
    limit = api_config(request).settings.max_event_bytes
    raw = await request.body()
    if len(raw) > limit:  # the middleware already cuts these off; belt and braces
        raise ApiError(413, f"request body larger than {limit} bytes")
    try:
        payload = json.loads(raw)
    except RecursionError:  # a body of ~1000 nested [ or { fits in any size limit
        REQUESTS_REFUSED.labels("bad_json").inc()
        raise ApiError(400, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an int over Python's digit limit
        REQUESTS_REFUSED.labels("bad_json").inc()
        raise ApiError(400, f"invalid JSON: {exc}") from None
    if has_lone_surrogate(raw, payload):
        REQUESTS_REFUSED.labels("bad_json").inc()
        raise ApiError(400, "invalid JSON: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    return payload
