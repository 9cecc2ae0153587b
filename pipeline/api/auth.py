"""Keys for the HTTP API: the event key for ingest, the signing key (Bearer) for runs and cancellations.

Both comparisons go through :func:`hmac.compare_digest`, so response time does not leak how
many leading characters of a guess were right. A key that is not configured means "open"
(development mode); the app logs that once at start so an open deployment does not go unnoticed.

The checks reach the routes as FastAPI dependencies (:func:`require_signing_key` on every router built
by :func:`signed_router`, :func:`require_event_key` on ingest), so a new ``/v1`` route cannot forget the
key: it is guarded by being on the router, not by remembering a call in its body.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Depends, Request

from ..config import Settings
from .context import api_config
from .edge import ApiError, answers
from .metrics import REQUESTS_REFUSED

_warned: set[str] = set()


def keys_equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key with the configured one (None never matches)."""
    if given is None:
        # Still compare, so "no key" and "wrong key" take the same time.
        hmac.compare_digest(expected.encode(), expected.encode())
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None if absent or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def event_key_ok(settings: Settings, key: str) -> bool:
    """Whether ``key`` (the path part of ``POST /e/{key}``) may ingest events. Open when no key is set."""
    if not settings.event_key:
        return True
    return keys_equal(key, settings.event_key)


def signing_key_ok(settings: Settings, authorization: str | None) -> bool:
    """Whether an Authorization header grants the run and cancellation APIs. Open when no key is set."""
    if not settings.signing_key:
        return True
    return keys_equal(bearer_token(authorization), settings.signing_key)


def open_warnings(settings: Settings) -> list[str]:
    """Why this deployment is (partly) unauthenticated, one line per unset key."""
    out: list[str] = []
    if not settings.event_key:
        out.append("PIPELINE_EVENT_KEY is not set: POST /e/{key} accepts any key (development mode)")
    if not settings.signing_key:
        out.append("PIPELINE_SIGNING_KEY is not set: the run and cancellation APIs need no Bearer key "
                   "(development mode)")
    return out


def warn_if_open(settings: Settings, logger: logging.Logger) -> list[str]:
    """Log each open-key warning once per process (``pipeline dev`` may build several apps); returns them."""
    messages = open_warnings(settings)
    for message in messages:
        if message not in _warned:
            _warned.add(message)
            logger.warning(message)
    return messages


# -- as FastAPI dependencies ----------------------------------------------------------------------------------------
# Both are async (they do not block), so FastAPI calls them on the event loop rather than hopping to a
# worker thread, and both take the Request rather than declaring a Header parameter, so /openapi.json
# gains no ``authorization`` parameter on every operation (clients and fuzzers see the API as before).


async def require_signing_key(request: Request) -> None:
    """401 unless the request carries ``Authorization: Bearer <signing key>`` (or no key is configured)."""
    if not signing_key_ok(api_config(request).settings, request.headers.get("authorization")):
        REQUESTS_REFUSED.labels("unauthorized").inc()
        raise ApiError(401, "a valid 'Authorization: Bearer <signing key>' header is required")


async def require_event_key(event_key: str, request: Request) -> None:
    """401 unless the ``{event_key}`` path part of ``POST /e/{event_key}`` is the configured event key."""
    if not event_key_ok(api_config(request).settings, event_key):
        REQUESTS_REFUSED.labels("bad_event_key").inc()
        raise ApiError(401, "Event key not found")


def signed_router() -> APIRouter:
    """A router whose every route needs the signing key, and says so in /openapi.json (401)."""
    return APIRouter(dependencies=[Depends(require_signing_key)], responses=answers(401))
