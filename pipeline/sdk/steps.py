"""The step API and the interrupts that make steps durable (Inngest's memoization model).

A handler is invoked again from the top for every step. ``step.run`` returns the stored
result of a step that already completed; the first step that has not completed runs, and
its outcome is raised as an :class:`Interrupt` so the executor can store it (in the same
Kafka transaction as the run's next command) before anything later runs. A crash between
two steps therefore repeats at most the step in flight, never a completed one.
"""

from __future__ import annotations

import datetime
import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..protocol.ids import function_id as full_function_id
from .durations import duration_ms


class Interrupt(BaseException):
    """Raised out of a handler to hand a step's outcome to the executor.

    A BaseException, so ``except Exception`` in user code does not swallow it.
    """


class StepCompleted(Interrupt):
    """``step.run`` finished: store ``output`` (JSON text) under ``step_id``."""

    def __init__(self, step_id: str, op: str, output: str) -> None:
        super().__init__(step_id)
        self.step_id = step_id
        self.op = op
        self.output = output


class StepFailed(Interrupt):
    """``step.run`` raised: the executor retries the step (the run) with backoff."""

    def __init__(self, step_id: str, error: BaseException) -> None:
        super().__init__(step_id)
        self.step_id = step_id
        self.error = error


class SleepRequested(Interrupt):
    """``step.sleep``/``sleep_until`` reached: the run sleeps until ``wake_at`` (ms) without holding a thread."""

    def __init__(self, step_id: str, wake_at: int, duration_ms: int | None = None) -> None:
        super().__init__(step_id)
        self.step_id = step_id
        self.wake_at = wake_at
        self.duration_ms = duration_ms  # step.sleep's duration (None: sleep_until, a point in time)


class SendEventRequested(Interrupt):
    """``step.send_event``: the executor produces ``events`` and stores their ids as the step output."""

    def __init__(self, step_id: str, events: list[dict[str, Any]]) -> None:
        super().__init__(step_id)
        self.step_id = step_id
        self.events = events


class StepsCompleted(Interrupt):
    """``group.parallel`` ran several steps side by side: each entry is ``(step_id, output JSON, None)`` or
    ``(step_id, None, the exception)``. The owner stores every success and retries the run for a failure."""

    def __init__(self, entries: list[tuple[str, str | None, BaseException | None]]) -> None:
        super().__init__(entries[0][0])
        self.entries = entries


class LookaheadStop(Interrupt):
    """In a look-ahead pass (see :mod:`pipeline.workers.invoke`): the handler reached new work, so the pass
    stops before doing any; the worker reports only the step that just ran."""


class Planned(Interrupt):
    """Inside ``group.parallel``: a ``step.run`` that has not completed yet, collected to run side by side."""

    def __init__(self, step_id: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        super().__init__(step_id)
        self.step_id = step_id
        self.fn = fn
        self.args = args


class WaitRequested(Interrupt):
    """``step.wait_for_event``: the run waits (no thread held) until a matching event or ``timeout_at`` (ms)."""

    def __init__(self, step_id: str, event: str, if_exp: str | None, timeout_at: int,
                 invoke: dict[str, Any] | None = None) -> None:
        super().__init__(step_id)
        self.step_id = step_id
        self.event = event
        self.if_exp = if_exp
        self.timeout_at = timeout_at
        self.invoke = invoke  # step.invoke: {function_id, data, user}; the wait is for the child's function.finished


FUNCTION_FINISHED = "inngest/function.finished"
FUNCTION_INVOKED = "inngest/function.invoked"
INVOKE_TIMEOUT_MS = 365 * 24 * 3600 * 1000  # no timeout given: wait for the child as long as it runs (a year)


class NonRetriableError(Exception):
    """Raise from a handler or step to fail the run at once, without retries (inngest-py's name and arguments).

    ``quiet=True`` keeps the worker from logging it as an error: an expected failure, not a bug."""

    def __init__(self, message: str | None = None, quiet: bool = False) -> None:
        super().__init__(message or "")
        self.quiet = quiet


class StepError(Exception):
    """Raised by ``step.run`` in the handler when that step failed for good (its retries spent, or it raised
    NonRetriableError). Catch it to let the run go on; left uncaught, it fails the run without more retries.

    ``name``, ``message`` and ``stack`` describe the step's own error, as in inngest-py."""

    def __init__(self, message: str, name: str, stack: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.stack = stack

    @classmethod
    def from_json(cls, raw: str) -> StepError:
        payload = json.loads(raw)
        return cls(payload.get("message") or "", payload.get("name") or "Error", payload.get("stack"))


class RetryAfterError(Exception):
    """Raise to retry no sooner than ``retry_after``: an int of milliseconds, a timedelta, or a datetime.

    The owner schedules the next attempt at that time instead of its exponential backoff (a rate-limited API
    that said when to come back). It still counts as an attempt."""

    def __init__(self, message: str | None, retry_after: int | datetime.timedelta | datetime.datetime,
                 quiet: bool = False) -> None:
        super().__init__(message or "")
        self.quiet = quiet
        if isinstance(retry_after, datetime.datetime):
            when = retry_after if retry_after.tzinfo else retry_after.replace(tzinfo=datetime.UTC)
            self.retry_at_ms = int(when.timestamp() * 1000)
        else:
            self.retry_at_ms = time.time_ns() // 1_000_000 + duration_ms(retry_after, "RetryAfterError.retry_after")


def _to_json(step_id: str, value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise NonRetriableError(f"step {step_id!r} returned a value that is not JSON-serializable: {exc}") from exc


class _StepBase:
    """Shared bookkeeping: memoized outputs and Inngest-style ids for repeated step names (``id``, ``id:1``, ...)."""

    def __init__(self, memo: dict[str, str | None], now_ms: int, errors: dict[str, str] | None = None) -> None:
        self._memo = memo
        self._errors = errors or {}
        self._seen: dict[str, int] = {}
        self._now_ms = now_ms
        self._replayed = 0
        self.planning = False  # inside group.parallel: new step.run calls are collected, not run
        self.lookahead = False  # a pass after a step ran, to see whether the handler returns: runs no step

    @property
    def replaying(self) -> bool:
        """Whether memoized steps remain ahead: the code running now already ran in an earlier invocation."""
        return self._replayed < len(self._memo)

    def _key(self, step_id: str) -> str:
        n = self._seen.get(step_id, 0)
        self._seen[step_id] = n + 1
        key = step_id if n == 0 else f"{step_id}:{n}"
        if key in self._memo:
            self._replayed += 1
        return key

    def _only_run_in_parallel(self, what: str) -> None:
        if self.planning:
            raise NonRetriableError(f"group.parallel takes step.run calls only, not step.{what}")

    def _lookup(self, step_id: str) -> tuple[str, bool, Any]:
        """(step key, whether it completed before, its stored output)."""
        key = self._key(step_id)
        if key in self._errors:
            raise StepError.from_json(self._errors[key])
        if key in self._memo:
            raw = self._memo[key]
            return key, True, None if raw is None else json.loads(raw)
        return key, False, None

    @staticmethod
    def _events(events: Any) -> list[dict[str, Any]]:
        items = events if isinstance(events, list) else [events]
        out = []
        for ev in items:
            if hasattr(ev, "model_dump"):
                ev = ev.model_dump()
            if not isinstance(ev, dict) or not ev.get("name"):
                raise NonRetriableError("send_event takes events with a name")
            out.append(ev)
        return out


@contextmanager
def _failures_of(key: str) -> Iterator[None]:
    """Turn an exception raised by a step's code into :class:`StepFailed` (interrupts pass through)."""
    try:
        yield
    except Interrupt:
        raise
    except Exception as exc:
        raise StepFailed(key, exc) from exc


def _until_ms(until: datetime.datetime) -> int:
    if until.tzinfo is None:
        until = until.replace(tzinfo=datetime.UTC)
    return int(until.timestamp() * 1000)


class StepSync(_StepBase):
    """The step API for sync handlers: ``ctx.step.run / sleep / sleep_until / send_event``."""

    def run(self, step_id: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` once, durably; later invocations get its stored result."""
        key, hit, value = self._lookup(step_id)
        if hit:
            return value
        if self.planning:
            raise Planned(key, fn, args)
        if self.lookahead:
            raise LookaheadStop(key)
        with _failures_of(key):
            result = fn(*args)
        raise StepCompleted(key, "run", _to_json(key, result))

    def sleep(self, step_id: str, duration: datetime.timedelta | int) -> None:
        """Sleep durably for a timedelta or an int of **milliseconds** (as inngest-py)."""
        self._only_run_in_parallel("sleep")
        ms = duration_ms(duration, f"step.sleep({step_id!r})")
        key = self._key(step_id)
        if key not in self._memo:
            raise SleepRequested(key, self._now_ms + ms, ms)

    def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        """Sleep durably until a point in time."""
        self._only_run_in_parallel("sleep_until")
        key = self._key(step_id)
        if key not in self._memo:
            raise SleepRequested(key, _until_ms(until))

    def send_event(self, step_id: str, events: Any) -> list[str]:
        """Send one event or a list, once; returns their ids."""
        self._only_run_in_parallel("send_event")
        key, hit, value = self._lookup(step_id)
        if hit:
            return list(value)
        raise SendEventRequested(key, self._events(events))


    def wait_for_event(self, step_id: str, *, event: str, timeout: datetime.timedelta | int,
                       if_exp: str | None = None) -> Any:
        """Wait durably for an event named ``event`` (received after the wait began) for which ``if_exp`` holds
        (CEL over ``event``, the run's trigger, and ``async``, the candidate); returns it as a
        :class:`pipeline.Event`, or None once ``timeout`` (a timedelta or an int of **milliseconds**) passed."""
        self._only_run_in_parallel("wait_for_event")
        key, hit, value = self._lookup(step_id)
        if hit:
            return _as_event(value)
        name: object = event  # callers without type checking may pass anything
        if not isinstance(name, str) or not name:
            raise NonRetriableError(f"step.wait_for_event({step_id!r}): event must be an event name")
        ms = duration_ms(timeout, f"step.wait_for_event({step_id!r}) timeout")
        # from now, not from the invocation's start: code before the call may have taken a while
        raise WaitRequested(key, event, if_exp or None, time.time_ns() // 1_000_000 + ms)

    def invoke(self, step_id: str, *, function: Any, data: Any = None, user: Any = None,
               timeout: datetime.timedelta | int | None = None, v: str | None = None) -> Any:
        """Run ``function`` (a Function of any served app) as a child run with ``data`` as its event data, and
        return its result; raises StepError if it fails (after its own retries) or ``timeout`` passes."""
        return _invoke(self, step_id, function.id, data, user, timeout)

    def invoke_by_id(self, step_id: str, *, function_id: str, app_id: str | None = None, data: Any = None,
                     user: Any = None, timeout: datetime.timedelta | int | None = None, v: str | None = None) -> Any:
        """:meth:`invoke` by id: ``function_id`` is the fn_id within ``app_id`` (default: this run's app), or the
        full ``<app>-<fn>`` id."""
        full_id = full_function_id(app_id, function_id) if app_id else function_id
        return _invoke(self, step_id, full_id, data, user, timeout)


def _invoke(step: _StepBase, step_id: str, function_id: str, data: Any, user: Any,
            timeout: datetime.timedelta | int | None) -> Any:
    """step.invoke: the child's result once its ``function.finished`` came back, StepError if it failed or timed
    out; otherwise ask the owner to start the child and wait for it."""
    step._only_run_in_parallel("invoke")
    key, hit, value = step._lookup(step_id)
    if hit:
        if value is None:
            raise StepError(f"invoked function {function_id!r} did not finish in time", "InngestInvokeTimeoutError")
        error = (value.get("data") or {}).get("error")
        if error:
            raise StepError(error.get("message") or "", error.get("name") or "Error", error.get("stack"))
        return (value.get("data") or {}).get("result")
    if data is not None and hasattr(data, "model_dump"):
        data = data.model_dump()
    if data is not None and not isinstance(data, dict):
        raise NonRetriableError(f"step.invoke({step_id!r}): data must be a JSON object")
    ms = INVOKE_TIMEOUT_MS if timeout is None else duration_ms(timeout, f"step.invoke({step_id!r}) timeout")
    json.dumps(data)  # fail here, in the handler, if it cannot travel
    raise WaitRequested(key, FUNCTION_FINISHED, None, time.time_ns() // 1_000_000 + ms,
                        invoke={"function_id": function_id, "data": data or {}, "user": user or {}})


def _as_event(value: Any) -> Any:
    if value is None:
        return None
    from ..serde.models import Event  # the SDK's Event model (kept out of the import path of every step)

    return Event.model_validate(value)


class Step(_StepBase):
    """The step API for ``async def`` handlers: the same calls, awaited."""

    async def run(self, step_id: str, fn: Callable[..., Any], *args: Any) -> Any:
        key, hit, value = self._lookup(step_id)
        if hit:
            return value
        if self.planning:
            raise Planned(key, fn, args)
        if self.lookahead:
            raise LookaheadStop(key)
        with _failures_of(key):
            result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
        raise StepCompleted(key, "run", _to_json(key, result))

    async def sleep(self, step_id: str, duration: datetime.timedelta | int) -> None:
        StepSync.sleep(self, step_id, duration)  # type: ignore[arg-type]

    async def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        StepSync.sleep_until(self, step_id, until)  # type: ignore[arg-type]

    async def send_event(self, step_id: str, events: Any) -> list[str]:
        return StepSync.send_event(self, step_id, events)  # type: ignore[arg-type]

    async def wait_for_event(self, step_id: str, *, event: str, timeout: datetime.timedelta | int,
                             if_exp: str | None = None) -> Any:
        return StepSync.wait_for_event(self, step_id, event=event, timeout=timeout,  # type: ignore[arg-type]
                                       if_exp=if_exp)

    async def invoke(self, step_id: str, *, function: Any, data: Any = None, user: Any = None,
                     timeout: datetime.timedelta | int | None = None, v: str | None = None) -> Any:
        return _invoke(self, step_id, function.id, data, user, timeout)

    async def invoke_by_id(self, step_id: str, *, function_id: str, app_id: str | None = None, data: Any = None,
                           user: Any = None, timeout: datetime.timedelta | int | None = None,
                           v: str | None = None) -> Any:
        full_id = full_function_id(app_id, function_id) if app_id else function_id
        return _invoke(self, step_id, full_id, data, user, timeout)

