"""Keys for the HTTP API: the event key for ingest, the signing key (Bearer) for runs and cancellations.

Both comparisons go through :func:`hmac.compare_digest`, so response time does not leak how
many leading characters of a guess were right. A key that is not configured means "open"
(development mode); the app logs that once at start so an open deployment does not go unnoticed.
"""

from __future__ import annotations

import hmac
import logging

from ..config import Settings

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
