"""Run a handler once for an :class:`Invocation` and say what happened, as a ``StepOutcome`` record.

Pure apart from the user's own code: no Kafka. The handler runs from the top with the run's
completed steps memoized; the first new step either runs (``step.run``) or asks the owner for
something (sleep, send). Its outcome travels back to the run owner, which applies it.
Sync handlers run on the worker's thread pool (:func:`run_sync`), async ones on its one
long-lived event loop (:func:`run_async`): both share :func:`_classify`.

Every way a handler can end is an outcome: a ``SystemExit``, ``KeyboardInterrupt`` or ``CancelledError``
raised by user code (any ``BaseException``) is a failed attempt like any error, with the one error payload
(:mod:`pipeline.protocol.errors`), so the run retries and then fails. The one exception that is not the
handler's doing: its asyncio task being cancelled from outside (the worker stopping), which
:func:`run_async` lets through for the worker to tell apart (see ``Worker._run_async``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from typing import Any

from ..protocol.errors import error_json, error_payload, exception_payload
from ..protocol.invocations import outcome
from ..protocol.records import StepOutcome
from ..sdk.context import Context, EventView, ReplayAwareLogger
from ..sdk.function import Function
from ..sdk.group import Group, GroupSync
from ..sdk.steps import (
    Interrupt,
    NonRetriableError,
    RetryAfterError,
    SendEventRequested,
    SleepRequested,
    Step,
    StepCompleted,
    StepError,
    StepFailed,
    StepsCompleted,
    StepSync,
    WaitRequested,
)


def _now() -> int:
    return time.time_ns() // 1_000_000


def _context(fn: Function, inv: dict[str, Any], logger: logging.Logger, now_ms: int) -> Context:
    memo = {s["id"]: s["output"] for s in inv["steps"]}
    errors = {s["id"]: s["error"] for s in inv["steps"] if s.get("error")}
    event = EventView(json.loads(inv["event"]))
    batch = inv.get("batch")  # batch_events: ctx.events is the batch, ctx.event its first
    events = [EventView(e) for e in json.loads(batch)] if batch else [event]
    if fn.is_async:
        step: Step | StepSync = Step(memo, now_ms, errors)
        group: Group | GroupSync = Group(step)  # type: ignore[arg-type]
    else:
        step = StepSync(memo, now_ms, errors)
        group = GroupSync(step)
    return Context(event=event, events=events, run_id=inv["run_id"], attempt=inv["attempt"],
                   logger=ReplayAwareLogger(fn.logger or logger, step), step=step, function_id=fn.id, group=group)


def _report(logger: logging.Logger, exc: BaseException) -> None:
    """Log a handler's or step's error with its stack, unless it was raised ``quiet=True`` (an expected failure)."""
    error = exc.error if isinstance(exc, StepFailed) else exc
    if isinstance(error, Interrupt) or getattr(error, "quiet", False):
        return
    logger.warning("function raised %s: %s", type(error).__name__, error, exc_info=error)


def _error(exc: BaseException) -> dict[str, Any]:
    """Inngest's error shape, plus when to retry for a :class:`RetryAfterError` (the owner schedules it)."""
    if isinstance(exc, StepError):  # uncaught: the run fails with the step's own error, as it was stored
        return error_payload(exc.message, exc.name, exc.stack)
    payload = exception_payload(exc)
    payload["stack"] = "".join(traceback.format_exception(exc))[-4000:]
    if isinstance(exc, RetryAfterError):
        payload["retry_at"] = exc.retry_at_ms
    return payload


def failed(inv: dict[str, Any], exc: BaseException, started: int, worker: str) -> StepOutcome:
    """A failed attempt for any exception (``SystemExit`` and any other ``BaseException`` included): its error
    is the one payload as JSON, whatever the message holds; the run goes on by its retries."""
    return outcome(inv, "error", started, _now(), worker, error=error_json(_error(exc)),
                   retriable=not isinstance(exc, (NonRetriableError, StepError)))


def cancelled_from_outside(exc: BaseException) -> bool:
    """Is ``exc`` the running task being cancelled (``Task.cancel()``), not a ``CancelledError`` that user code
    raised by itself? Only the first is passed on (the worker decides whether it is stopping)."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return False
    return task is not None and task.cancelling() > 0


def _classify(inv: dict[str, Any], started: int, worker: str, result: Any = None,
              exc: BaseException | None = None) -> StepOutcome:
    """Turn how the handler ended (a return value, an interrupt, an exception) into an outcome."""
    if isinstance(exc, StepCompleted):
        return outcome(inv, "step", started, _now(), worker, step_id=exc.step_id, output=exc.output)
    if isinstance(exc, SleepRequested):
        return outcome(inv, "sleep", started, _now(), worker, step_id=exc.step_id, wake_at=exc.wake_at)
    if isinstance(exc, StepsCompleted):
        entries: list[dict[str, Any]] = []
        for key, output, error in exc.entries:
            if error is None:
                entries.append({"id": key, "output": output})
            else:
                entries.append({"id": key, "error": _error(error),
                                "retriable": not isinstance(error, NonRetriableError)})
        return outcome(inv, "steps", started, _now(), worker, step_id=exc.entries[0][0], output=json.dumps(entries))
    if isinstance(exc, WaitRequested):
        return outcome(inv, "wait", started, _now(), worker, step_id=exc.step_id, wake_at=exc.timeout_at,
                       wait=json.dumps({"event": exc.event, "if": exc.if_exp, "invoke": exc.invoke}, default=str))
    if isinstance(exc, SendEventRequested):
        return outcome(inv, "send", started, _now(), worker, step_id=exc.step_id,
                       events=json.dumps(exc.events, default=str))
    if isinstance(exc, StepFailed):
        return outcome(inv, "error", started, _now(), worker, step_id=exc.step_id,
                       error=error_json(_error(exc.error)),
                       retriable=not isinstance(exc.error, NonRetriableError))
    if exc is not None:  # any other exception (an uncaught StepError: the step already used its retries)
        return failed(inv, exc, started, worker)
    try:
        output = json.dumps(result, separators=(",", ":"))
    except (TypeError, ValueError) as bad:
        payload = exception_payload(ValueError(f"return value is not JSON-serializable: {bad}"))
        return outcome(inv, "error", started, _now(), worker, error=error_json(payload), retriable=False)
    return outcome(inv, "completed", started, _now(), worker, output=output)


def run_sync(fn: Function, inv: dict[str, Any], logger: logging.Logger, worker: str = "",
             now_ms: int | None = None) -> StepOutcome:
    """Invoke a sync handler (on a worker thread). ``now_ms`` fixes the clock (tests)."""
    started = _now() if now_ms is None else now_ms
    ctx = _context(fn, inv, logger, started)
    try:
        result = fn.handler(ctx)
    except BaseException as exc:  # noqa: BLE001 - every way a handler ends is an outcome, SystemExit included
        _report(logger, exc)
        out = _classify(inv, started, worker, exc=exc)
        if isinstance(exc, StepCompleted):
            ahead = _ahead(fn, inv, exc, logger, started)
            try:
                out["final"] = _final(ahead, fn.handler(ahead))
            except SleepRequested as sleep:  # the handler sleeps next: the run sleeps without another invocation
                _sleeps(out, ahead, sleep)  # (step.sleep; a sleep_until is left to the next invocation)
            except BaseException:  # noqa: BLE001 - new work ahead (or an error): the next invocation does it
                pass
        return out
    return _classify(inv, started, worker, result=result)


async def run_async(fn: Function, inv: dict[str, Any], logger: logging.Logger, worker: str = "",
                    now_ms: int | None = None) -> StepOutcome:
    """Invoke an async handler (on the worker's event loop)."""
    started = _now() if now_ms is None else now_ms
    ctx = _context(fn, inv, logger, started)
    try:
        result = await fn.handler(ctx)
    except BaseException as exc:  # as in run_sync, except a cancel of the task from outside
        if cancelled_from_outside(exc):
            raise
        _report(logger, exc)
        out = _classify(inv, started, worker, exc=exc)
        if isinstance(exc, StepCompleted):
            ahead = _ahead(fn, inv, exc, logger, started)
            try:
                out["final"] = _final(ahead, await fn.handler(ahead))
            except SleepRequested as sleep:
                _sleeps(out, ahead, sleep)
            except BaseException as again:  # new work ahead (or an error): the pass is dropped
                if cancelled_from_outside(again):
                    raise
        return out
    return _classify(inv, started, worker, result=result)


def _ahead(fn: Function, inv: dict[str, Any], done: StepCompleted, logger: logging.Logger, started: int) -> Context:
    """A context for the look-ahead pass: the step that just ran counts as memoized, and no new work may run.

    A handler is invoked again after every step; for the last step that second invocation only finds that the
    handler returns, and for a step followed by ``step.sleep`` only that it sleeps. Running the handler once
    more right away, in the same invocation, with the new step memoized and every new step refused
    (:class:`LookaheadStop`), gives the result or the sleep without that round trip: the owner stores the step
    and the result (or the sleep) together. Nothing runs that the next invocation would not run (code between
    steps runs on every invocation anyway); the pass is dropped if it reaches any other new work (a
    ``sleep_until`` too: its point in time is for the next invocation to say)."""
    steps = [*inv["steps"], {"id": done.step_id, "output": done.output, "error": None}]
    ctx = _context(fn, dict(inv, steps=steps), logger, started)
    ctx.step.lookahead = True
    return ctx


def _used(ctx: Context) -> None:
    """The pass is used: its held log lines are said (the next invocation, which would say them, is skipped)."""
    if isinstance(ctx.logger, ReplayAwareLogger):
        ctx.logger.release()


def _final(ctx: Context, result: Any) -> str:
    """The handler's result as JSON, and its held log lines said (the pass is used)."""
    final = json.dumps(result, separators=(",", ":"))  # TypeError: not used; the next invocation reports it
    _used(ctx)
    return final


def _sleeps(out: StepOutcome, ctx: Context, sleep: SleepRequested) -> None:
    """The pass reached ``step.sleep``: the outcome carries the sleep, its step id and duration (the owner counts
    it from when it stores the step, as the next invocation would have counted it from its start)."""
    if sleep.duration_ms is None:
        return  # sleep_until: the pass is dropped
    out["sleep_step"] = sleep.step_id
    out["sleep_ms"] = sleep.duration_ms
    _used(ctx)
