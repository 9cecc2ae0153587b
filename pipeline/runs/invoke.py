"""Invoke a handler once against a run's memoized steps and classify what happened.

Pure apart from the user's own code: no Kafka. The outcome says which state transition
applies (see :mod:`pipeline.runs.state`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from ..sdk.context import Context, EventView
from ..sdk.function import Function
from ..sdk.steps import (AsyncStep, NonRetriableError, SendEventRequested, SleepRequested, Step, StepCompleted,
                         StepFailed)
from ..sysevents.builders import error_payload


@dataclass
class Outcome:
    """One invocation's result. ``kind``: completed | step | sleep | send | error."""

    kind: str
    step_id: str | None = None
    output: str | None = None
    wake_at: int | None = None
    events: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None
    retriable: bool = True


def invoke(fn: Function, state: dict[str, Any], now_ms: int, logger: logging.Logger) -> Outcome:
    """Run ``fn``'s handler from the top with the run's completed steps memoized, until its next new step."""
    memo = {s["id"]: s["output"] for s in state["steps"]}
    event = EventView(json.loads(state["event"]))
    step = AsyncStep(memo, now_ms) if fn.is_async else Step(memo, now_ms)
    ctx = Context(event=event, events=[event], run_id=state["run_id"], attempt=state["attempt"], logger=logger,
                  step=step, function_id=fn.id)
    try:
        if fn.is_async:
            result = asyncio.run(fn.handler(ctx))
        else:
            result = fn.handler(ctx)
    except StepCompleted as done:
        return Outcome("step", step_id=done.step_id, output=done.output)
    except SleepRequested as sleep:
        return Outcome("sleep", step_id=sleep.step_id, wake_at=sleep.wake_at)
    except SendEventRequested as send:
        return Outcome("send", step_id=send.step_id, events=send.events)
    except StepFailed as failed:
        return Outcome("error", step_id=failed.step_id, error=error_payload(failed.error),
                       retriable=not isinstance(failed.error, NonRetriableError))
    except Exception as exc:
        return Outcome("error", error=error_payload(exc), retriable=not isinstance(exc, NonRetriableError))
    try:
        output = json.dumps(result, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        return Outcome("error", error=error_payload(ValueError(f"return value is not JSON-serializable: {exc}")),
                       retriable=False)
    return Outcome("completed", output=output)
