"""Inngest's error payload ``{error, message, name}``: the one place it is built.

Every error that travels (a failed step, a failed run, ``function.failed``, a cancelled run's error) has this
shape, so the SDK's ``StepError`` and the dev UI read one format whoever wrote it.
"""

from __future__ import annotations

import json
from typing import Any

CANCELLED_ERROR: dict[str, Any] = {"error": "function cancelled", "message": "function cancelled", "name": "Error"}


def error_payload(message: str, name: str = "Error", stack: str | None = None) -> dict[str, Any]:
    """The payload for an error with this message and name (``stack`` kept when given)."""
    payload: dict[str, Any] = {"error": message, "message": message, "name": name}
    if stack is not None:
        payload["stack"] = stack
    return payload


def exception_payload(exc: BaseException) -> dict[str, Any]:
    """The payload of an exception (any ``BaseException``: ``SystemExit`` and ``CancelledError`` included).
    An empty message falls back to the exception's type name, so the payload always says something."""
    return error_payload(str(exc) or type(exc).__name__, type(exc).__name__)


def error_json(payload: dict[str, Any]) -> str:
    """The payload as the JSON text that records carry (``StepOutcome.error``, ``RunState.error``)."""
    return json.dumps(payload, separators=(",", ":"), default=str)
