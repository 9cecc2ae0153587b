"""The HTTP edge's contract: what /openapi.json declares, how errors render, and what OPTIONS and 405 say.

The routes read their JSON bodies themselves (so that a bad body is one clear 400 and not FastAPI's 422
per field), which leaves FastAPI nothing to declare; :func:`body` and :func:`answers` put the request
bodies and the status codes that the API really returns into the schema, so that clients and schemathesis
see the truth. Rendering is ASCII-escaped, so an error that echoes odd input (a lone UTF-16 surrogate from a
``\\ud800`` escape) can never turn into a 500 while being written.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from ..serde.models import Event

INT64_MAX = 2**63 - 1
_ERROR_SCHEMA = {"type": "object", "required": ["error", "status"],
                 "properties": {"error": {"type": "string"}, "status": {"type": "integer"}, "details": {}}}
_REASONS = {400: "invalid request", 401: "missing or wrong key", 404: "not found", 405: "method not allowed",
            409: "conflict with the run's state", 413: "body too large",
            503: "tables still loading from Kafka"}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
"""The methods :func:`allowed_methods` tries: every method a route here may serve (OPTIONS is always added)."""


class SafeJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: any Python string renders, lone surrogates included."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for its ``responses=``."""
    return {code: {"description": _REASONS[code], "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
            for code in codes}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body, for a route's ``openapi_extra=``."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def event_body_schema() -> dict[str, Any]:
    """One event or a list of events (``POST /e/{key}``), inlined so the schema needs no $defs."""
    one = Event.model_json_schema()
    return {"anyOf": [one, {"type": "array", "items": one}]}


def has_lone_surrogate(raw: bytes, payload: Any) -> bool:
    """Whether a parsed JSON body holds a string that is not valid Unicode (a ``\\udXXX`` escape alone).

    Only a body with such an escape can; the quick byte test keeps the usual request free of a second pass."""
    if b"\\ud" not in raw and b"\\uD" not in raw:
        return False
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def allowed_methods(routes: list[Any], scope: Scope) -> list[str]:
    """Every method some route serves at this path: the ``Allow`` header of OPTIONS and 405 answers
    (Starlette's own 405 names only the first route that matched the path).

    Each method is tried against every route through :meth:`BaseRoute.matches` rather than by reading
    ``route.methods``: FastAPI (from 0.12x on) keeps an included router as one lazy route whose own routes
    are not in ``app.routes``, and ``matches`` answers the same for a plain route and an included router."""
    methods: set[str] = set()
    for method in _METHODS:
        probe = {**scope, "method": method}
        if any(isinstance(route, BaseRoute) and route.matches(probe)[0] is Match.FULL for route in routes):
            methods.add(method)
    if methods:
        methods.add("OPTIONS")
    return sorted(methods)


class ApiError(Exception):
    """An answer other than 2xx, rendered as ``{"error", "status"[, "details"]}``."""

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
