"""The canceller's join table: listeners and recent signals by join key (pure, no Kafka).

A signal cancels a listener's run when, in the same join key:

* the signal's event was received at or after the run's triggering event (``>=`` on broker
  receive time in ms) and is not the triggering event itself;
* it was received before the listener expired;
* the listener's residual condition (if any) holds for the signal's event.

Signals are kept for a bounded window, so that a listener registered *after* a signal that
should hit it (the matcher saw the cancel first) still meets it: the guarantee holds whatever
order the services process the two events in. Inngest loses that race; we do not.

Residuals are compiled lazily and cached by text: many listeners share one residual shape.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..expr import Expr, ExprError, compile_expr


@dataclass(slots=True)
class Listener:
    run_id: str
    function_id: str
    trigger_event_id: str
    trigger_received_at: int
    expires_at: int
    residual: str | None
    owner_partition: int = -1
    wait_step: str | None = None  # a step.wait_for_event listener: a match resumes that step (see registration)

    @property
    def ident(self) -> str:
        """Its id within a join key: the run id, plus the step for a wait (a run may have both kinds)."""
        return self.run_id if self.wait_step is None else f"{self.run_id}\x1e{self.wait_step}"


@dataclass(slots=True)
class Signal:
    event_id: str
    received_at: int
    event: str  # JSON; parsed only when a residual needs it


@dataclass(slots=True)
class Match:
    """A run to cancel (or, for a wait listener, a step to resume) because of a signal."""

    join_key: str
    run_id: str
    function_id: str
    event_id: str
    owner_partition: int = -1
    wait_step: str | None = None
    event: str | None = None  # the signal's event JSON, for a wait (its step's output)

    @property
    def ident(self) -> str:
        return self.run_id if self.wait_step is None else f"{self.run_id}\x1e{self.wait_step}"


class CancelIndex:
    """Listeners and signals of the partitions one canceller owns."""

    def __init__(self, signal_window_ms: int) -> None:
        self.signal_window_ms = signal_window_ms
        self.listeners: dict[str, dict[str, Listener]] = {}
        self.signals: dict[str, list[Signal]] = {}
        self._residuals: dict[str, Expr | None] = {}
        self.listener_count = 0

    # -- updates -------------------------------------------------------------------------------------------

    def add_listener(self, key: str, listener: Listener, *, match: bool = True) -> list[Match]:
        """Register a listener; with ``match``, also check it against the signals already kept."""
        bucket = self.listeners.get(key)
        if bucket is None:
            bucket = self.listeners[key] = {}
        if listener.ident not in bucket:
            self.listener_count += 1
        bucket[listener.ident] = listener
        if not match:
            return []
        for signal in self.signals.get(key, ()):  # oldest first: a wait gets the first event after it began
            if self._hits(listener, signal):
                return [_match(key, listener, signal)]
        return []

    def add_signal(self, key: str, signal: Signal, *, match: bool = True) -> list[Match]:
        """Keep a signal for the window; with ``match``, return the listeners it cancels."""
        self.signals.setdefault(key, []).append(signal)
        if not match:
            return []
        bucket = self.listeners.get(key)
        if not bucket:
            return []
        return [_match(key, listener, signal) for listener in bucket.values() if self._hits(listener, signal)]

    def remove_listener(self, key: str, ident: str) -> None:
        """Forget a listener by its :attr:`Listener.ident` (the run id for a cancel_on listener)."""
        bucket = self.listeners.get(key)
        if bucket is not None and bucket.pop(ident, None) is not None:
            self.listener_count -= 1
            if not bucket:
                del self.listeners[key]

    def remove_signal(self, key: str, event_id: str) -> None:
        lst = self.signals.get(key)
        if lst:
            lst[:] = [s for s in lst if s.event_id != event_id]
            if not lst:
                del self.signals[key]

    def clear(self) -> None:
        self.listeners.clear()
        self.signals.clear()
        self.listener_count = 0

    # -- expiry --------------------------------------------------------------------------------------------

    def expired(self, now_ms: int) -> Iterator[tuple[str, str, str]]:
        """Yield ("listener"|"signal", join key, id) for everything past its time, removing it."""
        horizon = now_ms - self.signal_window_ms
        for key in list(self.signals):
            lst = self.signals[key]
            old = [s for s in lst if s.received_at < horizon]
            if old:
                keep = [s for s in lst if s.received_at >= horizon]
                if keep:
                    self.signals[key] = keep
                else:
                    del self.signals[key]
                for s in old:
                    yield "signal", key, s.event_id
        for key in list(self.listeners):
            bucket = self.listeners[key]
            gone = [rid for rid, listener in bucket.items() if listener.expires_at < now_ms]
            for rid in gone:
                self.remove_listener(key, rid)
                yield "listener", key, rid

    # -- the join condition --------------------------------------------------------------------------------

    def _hits(self, listener: Listener, signal: Signal) -> bool:
        if signal.received_at < listener.trigger_received_at or signal.event_id == listener.trigger_event_id:
            return False
        if signal.received_at > listener.expires_at:
            return False
        if listener.residual is None:
            return True
        expr = self._residual(listener.residual)
        if expr is None:
            return False
        return expr.evaluate({"async": json.loads(signal.event)})

    def _residual(self, source: str) -> Expr | None:
        if source not in self._residuals:
            try:
                self._residuals[source] = compile_expr(source, ("async",))
            except ExprError:
                self._residuals[source] = None  # cannot happen for residuals we printed; never cancel on it
        return self._residuals[source]


def _match(key: str, listener: Listener, signal: Signal) -> Match:
    if listener.wait_step is None:
        return Match(key, listener.run_id, listener.function_id, signal.event_id, listener.owner_partition)
    return Match(key, listener.run_id, listener.function_id, signal.event_id, listener.owner_partition,
                 listener.wait_step, signal.event)


def listener_from_record(record: dict[str, Any]) -> Listener:
    # function ids repeat across many listeners: intern them (about 60 B less per listener)
    return Listener(record["run_id"], sys.intern(record["function_id"]), record["trigger_event_id"],
                    record["trigger_received_at"], record["expires_at"], record.get("residual"),
                    record.get("owner_partition", -1), record.get("wait_step"))


def signal_from_record(record: dict[str, Any]) -> Signal:
    return Signal(record["event_id"], record["received_at"], record["event"])

