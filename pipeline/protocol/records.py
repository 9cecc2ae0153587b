"""The records that travel between services, one ``TypedDict`` per Avro schema in ``schemas/``.

These are the plain dicts fastavro reads and writes (no per-record model on the hot path), typed so that mypy
holds every writer and reader to one set of fields. ``tests/unit/test_records.py`` holds each ``TypedDict`` to
its schema: same field names, same optionality, so a schema change that forgets this file fails the gate.
JSON carried inside a record (an event's ``data``, a step's ``output``) stays text here: only its owner
decodes it.
"""

from __future__ import annotations

from typing import Literal, TypedDict

RunStatus = Literal["Queued", "Running", "Sleeping", "Waiting", "Completed", "Failed", "Cancelled", "Skipped"]
RunCommandKind = Literal["start", "execute", "cancel", "resume"]
OutcomeKind = Literal["completed", "step", "sleep", "send", "error", "wait", "steps"]


class EventRecord(TypedDict):
    """``Event`` on ``events`` and ``system-events``: ``data`` and ``user`` are JSON text."""

    id: str
    name: str
    data: str
    user: str
    ts: int
    v: str | None


class EventSeen(TypedDict):
    """``EventSeen`` on ``event-ids``: the matcher's dedup table (first sighting of an event id)."""

    event_id: str
    offset: int
    first_seen: int


class RunCommand(TypedDict):
    """``RunCommand`` on ``run-commands``: what the run owner is asked to do with one run."""

    kind: RunCommandKind
    run_id: str
    function_id: str
    ts: int
    event: str | None
    received_at: int | None
    reason: str | None
    source_id: str | None
    attempt: int
    step_id: str | None


class MemoStep(TypedDict):
    """A completed step as a handler sees it again: its output, or the error ``step.run`` raises."""

    id: str
    output: str | None
    error: str | None


class Invocation(TypedDict):
    """``Invocation`` on ``invocations``: one call of a handler, with its memoised steps."""

    run_id: str
    function_id: str
    seq: int
    attempt: int
    owner_partition: int
    event: str
    steps: list[MemoStep]
    dispatched_at: int
    batch: str | None


class StepOutcome(TypedDict):
    """``StepOutcome`` on ``run-commands``: what a worker's invocation ended with."""

    run_id: str
    function_id: str
    seq: int
    attempt: int
    kind: OutcomeKind
    step_id: str | None
    output: str | None
    wake_at: int | None
    events: str | None
    error: str | None
    retriable: bool
    started_at: int
    finished_at: int
    worker: str
    wait: str | None
    final: str | None
    sleep_step: str | None
    sleep_ms: int | None


class StepRecord(TypedDict):
    """One stored step of a run (``op``: run | sleep | send_event | wait_for_event | error)."""

    id: str
    op: str
    output: str | None
    completed_at: int
    started_at: int | None


class RunState(TypedDict):
    """``RunState`` on ``runs`` (compacted, key = run id): the source of truth for a run."""

    run_id: str
    function_id: str
    event_id: str
    event: str
    status: RunStatus
    attempt: int
    steps: list[StepRecord]
    output: str | None
    error: str | None
    received_at: int
    queued_at: int
    started_at: int | None
    ended_at: int | None
    wake_at: int | None
    pending_step: str | None
    deadline_at: int | None
    cancel_reason: str | None
    cancel_source: str | None
    version: int
    seq: int
    inflight_at: int | None
    ready_at: int | None
    held: str | None
    gate_wait_ms: int
    finishing: str | None
    concurrency_keys: list[str]
    replay_of: str | None
    waiting_for: str | None
    singleton_key: str | None
    batch: str | None


class CancelListener(TypedDict):
    """``CancelListener`` on ``cancel-index``: a run (or its ``wait_for_event`` step) waiting for a signal."""

    join_key: str
    run_id: str
    function_id: str
    trigger_event_id: str
    trigger_received_at: int
    expires_at: int
    residual: str | None
    owner_partition: int
    wait_step: str | None


class CancelSignal(TypedDict):
    """``CancelSignal`` on ``cancel-index``: an event that may cancel or resume listeners under its join key."""

    join_key: str
    event_id: str
    received_at: int
    event: str


class BulkCancellation(TypedDict):
    """``BulkCancellation`` on ``cancellations``: a rule every run owner applies to its own active runs."""

    id: str
    app_id: str
    function_id: str
    started_after: int | None
    started_before: int
    if_exp: str | None
    created_at: int
    stopped_at: int | None


class FunctionDef(TypedDict):
    """``FunctionDef`` on ``functions`` (compacted, key = function id): a function synced from an app over HTTP."""

    id: str
    app_id: str
    name: str
    url: str
    definition: str
    waits: str
    app_url: str
    sdk: str
    synced_at: int


class AppSync(TypedDict):
    """``AppSync`` on ``app-syncs`` (compacted, key = app id, or its URL): the last sync of an app over HTTP."""

    app_id: str
    url: str
    at: int
    ok: bool
    status: int
    modified: bool
    functions: int
    problems: list[str]
    sdk: str
class FlowLimit(TypedDict):
    """``FlowLimit`` on ``rate-limits`` (compacted): a rate limit's or idempotency key's GCRA state."""

    function_id: str
    option: str
    key: str | None
    tat: int
    expires_at: int


class DroppedEvent(TypedDict):
    """``DroppedEvent`` on ``dropped-events``: an event that a rate limit or idempotency dropped."""

    function_id: str
    run_id: str
    event_id: str
    event_name: str
    reason: str
    key: str | None
    received_at: int
    dropped_at: int
    event: str


#: Avro full name -> its TypedDict (the schema test walks this)
BY_SCHEMA: dict[str, type] = {
    "pipeline.Event": EventRecord,
    "pipeline.EventSeen": EventSeen,
    "pipeline.RunCommand": RunCommand,
    "pipeline.Invocation": Invocation,
    "pipeline.StepOutcome": StepOutcome,
    "pipeline.RunState": RunState,
    "pipeline.CancelListener": CancelListener,
    "pipeline.CancelSignal": CancelSignal,
    "pipeline.BulkCancellation": BulkCancellation,
    "pipeline.FunctionDef": FunctionDef,
    "pipeline.AppSync": AppSync,
    "pipeline.FlowLimit": FlowLimit,
    "pipeline.DroppedEvent": DroppedEvent,
}
