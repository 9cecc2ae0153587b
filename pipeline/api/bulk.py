"""Bulk cancellation requests, pure: parse, validate, and turn into the record and the JSON view.

Kept apart from the route and from Kafka, so the rules that decide a 400 are unit-tested without a broker.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from ulid import ULID

from ..expr import compile_expr

MAX_FUTURE_MS = 5_000
"""``started_before`` may be at most this far in the future (clock skew between client and server)."""


def to_ms(value: Any) -> Any:
    """A time as epoch milliseconds: ints (and digit strings) are ms already; RFC3339 strings and datetimes convert.

    Naive datetimes are taken as UTC. Booleans and floats are refused rather than guessed at.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected an RFC3339 time or epoch milliseconds, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an RFC3339 time or epoch milliseconds: {value!r}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    raise ValueError("expected an RFC3339 time or epoch milliseconds")


TimeMs = Annotated[int, BeforeValidator(to_ms)]


class CancellationRequest(BaseModel):
    """The body of ``POST /v1/cancellations``; ``if`` is a CEL expression over ``event`` (the run's trigger)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    app_id: str = Field(min_length=1, max_length=512)
    function_id: str = Field(min_length=1, max_length=512)
    started_before: TimeMs
    started_after: TimeMs | None = None
    if_: str | None = Field(default=None, alias="if", max_length=16 * 1024)

    @field_validator("if_")
    @classmethod
    def _blank_if_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None


def validate_window(started_before: int, started_after: int | None, now: int) -> None:
    """Refuse windows that cannot mean what the caller wants; ValueError with a message for the 400.

    ``started_before`` may not be more than 5 s ahead of the server clock: a bulk cancellation
    applies to runs that have already started, and a far-future bound would silently keep
    cancelling new runs for as long as the rule lives.
    """
    if started_before < 0:
        raise ValueError("started_before must not be negative")
    if started_before > now + MAX_FUTURE_MS:
        raise ValueError(f"started_before is {started_before - now} ms in the future; "
                         f"at most {MAX_FUTURE_MS} ms is allowed")
    if started_after is not None:
        if started_after < 0:
            raise ValueError("started_after must not be negative")
        if started_after >= started_before:
            raise ValueError("started_after must be earlier than started_before")


def validate_if(source: str | None) -> None:
    """Compile the ``if`` now, so a bad expression is a 400 here and not a silent no-op in every run owner."""
    if source is not None:
        compile_expr(source, ("event",))


def cancellation_record(req: CancellationRequest, now: int, cancellation_id: str | None = None) -> dict[str, Any]:
    """The BulkCancellation Avro record for a validated request."""
    return {"id": cancellation_id or str(ULID()), "app_id": req.app_id, "function_id": req.function_id,
            "started_after": req.started_after, "started_before": req.started_before, "if_exp": req.if_,
            "created_at": now, "stopped_at": None}


def cancellation_view(record: dict[str, Any], cancelled_runs: int) -> dict[str, Any]:
    """The JSON face of a BulkCancellation (times in epoch ms, ``if_exp`` shown as ``if``)."""
    return {"id": record["id"], "app_id": record["app_id"], "function_id": record["function_id"],
            "started_after": record.get("started_after"), "started_before": record["started_before"],
            "if": record.get("if_exp"), "created_at": record["created_at"], "stopped_at": record.get("stopped_at"),
            "cancelled_runs": cancelled_runs}
