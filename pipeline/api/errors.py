"""How every error leaves the API: ``{"error", "status"[, "details"]}``, Inngest's shape.

FastAPI and Starlette answer unknown paths, wrong methods and unexpected exceptions in their own shapes;
the handlers here bring those into the one shape too, so a client has a single thing to parse, and a 500
never carries a traceback or an internal message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .edge import ApiError, SafeJSONResponse, allowed_methods

log = logging.getLogger("pipeline.api")


def error_body(status: int, message: str, details: Any = None) -> dict[str, Any]:
    """The error payload; ``details`` only when there is something structured to add (field errors)."""
    body: dict[str, Any] = {"error": message, "status": status}
    if details is not None:
        body["details"] = details
    return body


def field_errors(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors as JSON-safe dicts, with ``loc`` prefixed (e.g. by the index in a batch).

    ``input`` is dropped: it may be large, and it would echo the caller's data back to them.
    """
    out = []
    for err in json.loads(exc.json(include_url=False)):
        err["loc"] = [*prefix, *err.get("loc", ())]
        err.pop("input", None)
        out.append(err)
    return out


def summary(errors: list[dict[str, Any]]) -> str:
    """The first few field errors in one line, for the ``error`` message of a 400."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])


def install_error_handlers(app: FastAPI) -> None:
    """Render :class:`ApiError`, Starlette's 404/405 and anything unexpected in the one error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        if exc.status >= 500:
            log.warning("request failed",
                        extra={"path": request.url.path, "status": exc.status, "error": exc.message})
        return SafeJSONResponse(error_body(exc.status, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # unknown paths (404) and methods (405) in the same shape as every other error
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = allowed_methods(request.app.routes, request.scope)
            if request.method == "OPTIONS" and allow:  # what a path serves (no CORS here: same-origin API)
                return Response(status_code=204, headers={"Allow": ", ".join(allow)})
            headers["Allow"] = ", ".join(allow)
        return SafeJSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                                headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Starlette logs the traceback (it re-raises to the server); the client gets no detail.
        return SafeJSONResponse(error_body(500, "internal server error"), status_code=500)
