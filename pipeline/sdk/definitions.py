"""Function configuration objects, named as in Inngest's Python SDK so code ports with little change.

These are pydantic models: a bad definition fails when the app loads, with a clear message.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .durations import as_timedelta

DEFAULT_CANCEL_TIMEOUT = datetime.timedelta(days=365)
MAX_CANCEL_ENTRIES = 5


class TriggerEvent(BaseModel):
    """Start a run when an event named ``event`` arrives and ``expression`` (CEL over ``event``) holds.

    ``event`` may end in ``*`` to match a prefix, e.g. ``app/user.*``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(min_length=1)
    expression: str | None = None

    @model_validator(mode="after")
    def _wildcard_only_at_end(self) -> TriggerEvent:
        if "*" in self.event[:-1]:
            raise ValueError(f"trigger event {self.event!r}: '*' is allowed only at the end")
        return self


class Cancel(BaseModel):
    """Cancel a run when ``event`` arrives after the run's triggering event and ``if_exp`` holds.

    In ``if_exp``, ``event`` is the run's triggering event and ``async`` the incoming event.
    ``match="data.x"`` is shorthand for ``if_exp="event.data.x == async.data.x"``.
    ``timeout``: the listener expires that long after the run is scheduled (default 365 days).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(min_length=1)
    if_exp: str | None = None
    timeout: datetime.timedelta | None = None
    match: str | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout_ms(cls, value: Any) -> Any:
        return as_timedelta(value, "Cancel.timeout")

    @model_validator(mode="after")
    def _match_or_if(self) -> Cancel:
        if self.match is not None and self.if_exp is not None:
            raise ValueError(f"cancel on {self.event!r}: give either match or if_exp, not both")
        if "*" in self.event:
            raise ValueError(f"cancel on {self.event!r}: wildcards are not supported in cancel events")
        return self

    def expression(self) -> str | None:
        """The effective CEL condition (``match`` expanded)."""
        if self.match is not None:
            path = self.match.strip()
            return f"event.{path} == async.{path}"
        return self.if_exp

    def timeout_ms(self) -> int:
        """How long the listener lives, in ms."""
        return int((self.timeout or DEFAULT_CANCEL_TIMEOUT).total_seconds() * 1000)


class Timeouts(BaseModel):
    """Cancel a run that has not started within ``start`` of being scheduled, or not finished within ``finish``
    of starting. A timed-out run is cancelled like any other and emits ``inngest/function.cancelled``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime.timedelta | None = None
    finish: datetime.timedelta | None = None

    @field_validator("start", "finish", mode="before")
    @classmethod
    def _ms(cls, value: Any) -> Any:
        return as_timedelta(value, "Timeouts")

    def start_ms(self) -> int | None:
        return None if self.start is None else int(self.start.total_seconds() * 1000)

    def finish_ms(self) -> int | None:
        return None if self.finish is None else int(self.finish.total_seconds() * 1000)


class Concurrency(BaseModel):
    """At most ``limit`` runs of the function have an invocation (a step, or the handler's code) in flight.

    With ``key`` (CEL over ``event``, e.g. ``"event.data.account_id"``) the limit applies per key
    value. Runs over the limit wait in order. As in Inngest, a function takes at most two entries.
    Only ``scope="fn"`` (the default) is built: limits shared across functions are refused at load.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1, le=100_000)
    key: str | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _scope_is_fn(self) -> Concurrency:
        if self.scope not in (None, "fn"):
            raise ValueError(f"concurrency scope {self.scope!r} is not built yet; only 'fn' is")
        return self


MAX_CONCURRENCY_ENTRIES = 2


class DefinitionError(ValueError):
    """A function definition is invalid. The message names the function, the field and the value."""

    def __init__(self, function_id: str, field: str, value: Any, problem: str) -> None:
        self.function_id = function_id
        self.field = field
        self.value = value
        super().__init__(f"function {function_id!r}: {field} {value!r}: {problem}")


# -- triggers and flow control ----------------------------------------------------------------------------------


class TriggerCron(BaseModel):
    """Start a run on a schedule: ``TriggerCron(cron="*/5 * * * *")``, optionally ``"TZ=Europe/Paris 0 9 * * *"``
    (UTC otherwise). Exactly one run per tick; see :mod:`pipeline.sdk.cron` for ticks missed while down."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str = Field(min_length=1)


MIN_THROTTLE_PERIOD = datetime.timedelta(seconds=1)
MAX_THROTTLE_PERIOD = datetime.timedelta(days=7)


class Throttle(BaseModel):
    """At most ``limit`` run *starts* per ``period`` (per ``key`` value); steps are never throttled. Runs over
    the limit wait, in order (and by :class:`Priority`), none is dropped.

    As Inngest documents it: GCRA, a bucket of ``limit + burst`` starts refilled at ``limit`` per ``period`` (so
    ``limit + burst`` start at once from rest, then one every ``period / limit``).
    ``strict=True`` (this runtime's addition, not in inngest-py) counts instead: at most ``limit`` starts
    in any rolling ``period``. ``period``: 1 s to 7 days (a timedelta, or int milliseconds as inngest-py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1, le=100_000)
    period: datetime.timedelta
    key: str | None = None
    burst: int | None = Field(default=1, ge=1, le=100_000)
    strict: bool = False

    @field_validator("period", mode="before")
    @classmethod
    def _period_ms(cls, value: Any) -> Any:
        return as_timedelta(value, "Throttle.period")

    @model_validator(mode="after")
    def _period_range(self) -> Throttle:
        if not MIN_THROTTLE_PERIOD <= self.period <= MAX_THROTTLE_PERIOD:
            raise ValueError(f"throttle period {self.period}: must be between 1s and 7 days")
        return self

    def period_ms(self) -> int:
        return int(self.period.total_seconds() * 1000)


MAX_PRIORITY_S = 600


class Priority(BaseModel):
    """``run``: CEL over ``event`` giving seconds, clamped to ±600. Among the runs that wait (for a concurrency
    slot or a throttle), a run with value ``v`` is ordered as if it had been scheduled ``v`` seconds earlier:
    positive moves it ahead of older waiting runs, negative delays it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run: str = Field(min_length=1)


class Singleton(BaseModel):
    """At most one active run of the function per ``key`` value (sleeping, waiting and retrying runs count).
    A new run while one is active is either recorded as ``Skipped`` (``mode="skip"``) or cancels the active
    one and starts (``mode="cancel"``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str | None = None
    mode: Literal["skip", "cancel"]


# -- flow control: rate limit (events over the limit are dropped, see pipeline/run_owner/admission.py) ----------

MAX_RATE_LIMIT_PERIOD = datetime.timedelta(hours=24)


class RateLimit(BaseModel):
    """At most ``limit`` runs start per ``period`` (per value of ``key``, CEL over ``event``); events over it are
    dropped, never delayed. As in Inngest: ``period`` is a timedelta or an int of milliseconds, from 1 s to 24 h,
    and a ``key`` that evaluates to ``false`` exempts the event. The limit is Inngest's GCRA (a run every
    ``period / limit``, with a burst of ``limit // 10`` more)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1, le=100_000)
    period: datetime.timedelta
    key: str | None = None

    @field_validator("period", mode="before")
    @classmethod
    def _period_ms(cls, value: Any) -> Any:
        return as_timedelta(value, "RateLimit.period")

    @field_validator("period")
    @classmethod
    def _period_range(cls, value: datetime.timedelta) -> datetime.timedelta:
        if not datetime.timedelta(seconds=1) <= value <= MAX_RATE_LIMIT_PERIOD:
            raise ValueError(f"rate limit period {value} must be between 1 second and 24 hours")
        return value

    def period_ms(self) -> int:
        return int(self.period.total_seconds() * 1000)


# -- flow control: debounce and batch_events (issue 21; built in pipeline/run_owner/pending.py) --------------

MIN_DEBOUNCE_PERIOD_MS = 1000  # Inngest's consts.MinDebouncePeriod
MAX_DEBOUNCE_PERIOD_MS = 7 * 24 * 3600 * 1000  # consts.MaxDebouncePeriod
MIN_BATCH_TIMEOUT_MS = 1000  # Inngest refuses a batch timeout under 1 s
MAX_BATCH_SIZE = 1000  # a batch lives in one run state, which must fit one Kafka record (see CompiledBatch)


def _ms(value: datetime.timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds() * 1000)


class Debounce(BaseModel):
    """Start one run per burst of events: each event (per ``key``, CEL over ``event``) restarts ``period``; the
    run starts when ``period`` passes without one, or ``timeout`` after the burst's first event, with the event
    of the greatest ``ts``. Durations: a ``timedelta`` or an int of milliseconds (as inngest-py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period: datetime.timedelta
    key: str | None = None
    timeout: datetime.timedelta | None = None

    @field_validator("period", "timeout", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return as_timedelta(value, "Debounce")

    @model_validator(mode="after")
    def _ranges(self) -> Debounce:
        period = _ms(self.period) or 0
        if not MIN_DEBOUNCE_PERIOD_MS <= period <= MAX_DEBOUNCE_PERIOD_MS:
            raise ValueError(f"debounce period {period} ms: must be between 1 s and 7 days")
        if self.timeout is not None and (_ms(self.timeout) or 0) < MIN_DEBOUNCE_PERIOD_MS:
            raise ValueError(f"debounce timeout {_ms(self.timeout)} ms: must be at least 1 s")
        if self.key is not None and not self.key.strip():
            object.__setattr__(self, "key", None)  # Inngest reads an empty key as none
        return self

    def period_ms(self) -> int:
        return int(self.period.total_seconds() * 1000)

    def timeout_ms(self) -> int | None:
        return _ms(self.timeout)


class Batch(BaseModel):
    """Run once per batch of up to ``max_size`` events (per ``key``), started when the batch is full or
    ``timeout`` after its first event (the wait does not slide). An event for which ``if_exp`` (CEL over
    ``event``) is false runs alone, at once. The handler gets ``ctx.events``; ``ctx.event`` is the first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_size: int = Field(ge=2, le=MAX_BATCH_SIZE)
    timeout: datetime.timedelta
    key: str | None = None
    if_exp: str | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return as_timedelta(value, "Batch.timeout")

    @model_validator(mode="after")
    def _ranges(self) -> Batch:
        if (_ms(self.timeout) or 0) < MIN_BATCH_TIMEOUT_MS:
            raise ValueError(f"batch timeout {_ms(self.timeout)} ms: must be at least 1 s")
        return self

    def timeout_ms(self) -> int:
        return int(self.timeout.total_seconds() * 1000)
