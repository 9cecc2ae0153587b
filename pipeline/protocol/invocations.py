"""Invocations (run owner → workers) and their outcomes (workers → run owner): the two records of the worker hop.

The run owner never runs user code: it hands a worker an :class:`~pipeline.protocol.records.Invocation` (the
trigger and every step memoised so far) and applies the :class:`~pipeline.protocol.records.StepOutcome` that
comes back, once, if its ``seq`` and ``attempt`` are still current. Any kind of worker (in-process Python
handlers, an app called over HTTP) speaks these two records and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .records import Invocation, MemoStep, OutcomeKind, StepOutcome

STEP_ERROR = "error"  # the op of a step that failed for good (its output is the error JSON)


def memo_step(step: Mapping[str, Any]) -> MemoStep:
    """A stored step as the handler sees it again: its output, or the error that ``step.run`` raises."""
    failed = step["op"] == STEP_ERROR
    record: MemoStep = {
        "id": step["id"],
        "output": None if failed else step["output"],
        "error": step["output"] if failed else None,
    }
    return record


def invocation(
    run_id: str,
    function_id: str,
    seq: int,
    attempt: int,
    owner_partition: int,
    event: str,
    steps: Sequence[Mapping[str, Any]],
    dispatched_at: int,
    batch: str | None = None,
) -> Invocation:
    """Invocation ``seq`` of a run, for the worker: ``owner_partition`` is where its outcome goes back."""
    record: Invocation = {
        "run_id": run_id,
        "function_id": function_id,
        "seq": seq,
        "attempt": attempt,
        "owner_partition": owner_partition,
        "event": event,
        "steps": [memo_step(s) for s in steps],
        "dispatched_at": dispatched_at,
        "batch": batch,
    }
    return record


def outcome(
    inv: Mapping[str, Any],
    kind: OutcomeKind,
    started_at: int,
    finished_at: int,
    worker: str,
    *,
    step_id: str | None = None,
    output: str | None = None,
    wake_at: int | None = None,
    events: str | None = None,
    error: str | None = None,
    retriable: bool = True,
    wait: str | None = None,
    final: str | None = None,
    sleep_step: str | None = None,
    sleep_ms: int | None = None,
) -> StepOutcome:
    """The outcome of invocation ``inv``: what the handler did (``kind``) and its payload (JSON text)."""
    record: StepOutcome = {
        "run_id": inv["run_id"],
        "function_id": inv["function_id"],
        "seq": inv["seq"],
        "attempt": inv["attempt"],
        "kind": kind,
        "step_id": step_id,
        "output": output,
        "wake_at": wake_at,
        "events": events,
        "error": error,
        "retriable": retriable,
        "started_at": started_at,
        "finished_at": finished_at,
        "worker": worker,
        "wait": wait,
        "final": final,
        "sleep_step": sleep_step,
        "sleep_ms": sleep_ms,
    }
    return record
