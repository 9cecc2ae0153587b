"""Pydantic models: the Python face of the Avro records.

The hot paths work on the plain dicts fastavro returns (no per-record model allocation);
these models sit at the edges (SDK, HTTP, CLI, tests) where validation and clear errors matter.
``to_record`` / ``from_record`` convert between the two faces.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ulid import ULID

RunStatus = Literal["Queued", "Running", "Sleeping", "Waiting", "Completed", "Failed", "Cancelled", "Skipped"]
ENDED_STATUSES = frozenset({"Completed", "Failed", "Cancelled", "Skipped"})


def now_ms() -> int:
    """Wall-clock milliseconds, the time unit of every record."""
    return time.time_ns() // 1_000_000


class Event(BaseModel):
    """An event as users send it: ``{id, name, data, user, ts, v}``. A missing id or ts is filled at ingest."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512)
    data: dict[str, Any] = Field(default_factory=dict)
    user: dict[str, Any] = Field(default_factory=dict)
    id: str = ""
    ts: int = Field(default=0, ge=0, le=2**63 - 1, description="ms since the epoch; 0 or absent = now")
    v: str | None = None

    @field_validator("name")
    @classmethod
    def _name_has_no_spaces_only(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("event name must not be blank")
        return value

    def with_defaults(self) -> Event:
        """Give the event an id (ULID) and a ts (now) if it has none, as Inngest's ingest does."""
        if self.id and self.ts:
            return self
        return self.model_copy(update={"id": self.id or str(ULID()), "ts": self.ts or now_ms()})

    def to_record(self) -> dict[str, Any]:
        """The Avro record: data and user as JSON text so any JSON round-trips."""
        return {
            "id": self.id,
            "name": self.name,
            "data": json.dumps(self.data, separators=(",", ":")),
            "user": json.dumps(self.user, separators=(",", ":")),
            "ts": self.ts,
            "v": self.v,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """The event as Inngest shows it in payloads (``data``, ``id``, ``name``, ``ts``, ``user``; ``v`` if set)."""
        out: dict[str, Any] = {"data": self.data, "id": self.id, "name": self.name, "ts": self.ts, "user": self.user}
        if self.v is not None:
            out["v"] = self.v
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Event:
        """Build from a decoded Avro record."""
        return cls(
            id=record["id"],
            name=record["name"],
            data=json.loads(record.get("data") or "{}"),
            user=json.loads(record.get("user") or "{}"),
            ts=record.get("ts", 0),
            v=record.get("v"),
        )


def event_record_to_dict(record: dict[str, Any]) -> dict[str, Any]:
    """Decoded Avro event record -> the JSON-shaped event dict that expressions and handlers see (no model)."""
    data, user = record.get("data"), record.get("user")
    out = {
        "data": json.loads(data) if data else {},
        "id": record["id"],
        "name": record["name"],
        "ts": record.get("ts", 0),
        "user": json.loads(user) if user and user != "{}" else {},  # most events have no user: no parse
    }
    if record.get("v") is not None:
        out["v"] = record["v"]
    return out


def event_dict_to_record(event: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`event_record_to_dict`, for events built by services (system events)."""
    return {
        "id": event["id"],
        "name": event["name"],
        "data": json.dumps(event.get("data") or {}, separators=(",", ":")),
        "user": json.dumps(event.get("user") or {}, separators=(",", ":")),
        "ts": int(event.get("ts") or 0),
        "v": event.get("v"),
    }


class StepView(BaseModel):
    """One completed step as the HTTP API shows it."""

    id: str
    op: str
    output: Any = None
    completed_at: int
    started_at: int | None = None


class RunView(BaseModel):
    """A run as ``GET /v1/runs/{id}`` shows it (Inngest's field names)."""

    run_id: str
    function_id: str
    event_id: str
    status: RunStatus
    run_started_at: int | None
    ended_at: int | None
    output: Any = None
    error: Any = None
    steps: list[StepView] = Field(default_factory=list)
    attempt: int = 0
    cancel_reason: str | None = None
    cancel_source: str | None = None
    event: Any = None
    queued_at: int | None = None
    pending_step: str | None = None
    wake_at: int | None = None
    replay_of: str | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunView:
        """Build from a decoded RunState record."""
        return cls(
            run_id=state["run_id"],
            function_id=state["function_id"],
            event_id=state["event_id"],
            status=state["status"],
            run_started_at=state.get("started_at") or state.get("queued_at"),
            ended_at=state.get("ended_at"),
            output=json.loads(state["output"]) if state.get("output") is not None else None,
            error=json.loads(state["error"]) if state.get("error") is not None else None,
            steps=[
                StepView(id=s["id"], op=s["op"], output=json.loads(s["output"]) if s.get("output") else None,
                         completed_at=s["completed_at"], started_at=s.get("started_at"))
                for s in state.get("steps") or []
            ],
            attempt=state.get("attempt", 0),
            cancel_reason=state.get("cancel_reason"),
            cancel_source=state.get("cancel_source"),
            event=json.loads(state["event"]) if state.get("event") else None,
            queued_at=state.get("queued_at"),
            pending_step=state.get("pending_step"),
            wake_at=state.get("wake_at"),
            replay_of=state.get("replay_of"),
        )
