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


@dataclass(slots=True)
class Signal:
    event_id: str
    received_at: int
    event: str  # JSON; parsed only when a residual needs it


@dataclass(slots=True)
class Match:
    """A run to cancel because of a signal."""

    join_key: str
    run_id: str
    function_id: str
    event_id: str
    owner_partition: int = -1


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
        if listener.run_id not in bucket:
            self.listener_count += 1
        bucket[listener.run_id] = listener
        if not match:
            return []
        out = []
        for signal in self.signals.get(key, ()):
            if self._hits(listener, signal):
                out.append(Match(key, listener.run_id, listener.function_id, signal.event_id, listener.owner_partition))
                break
        return out

    def add_signal(self, key: str, signal: Signal, *, match: bool = True) -> list[Match]:
        """Keep a signal for the window; with ``match``, return the listeners it cancels."""
        self.signals.setdefault(key, []).append(signal)
        if not match:
            return []
        bucket = self.listeners.get(key)
        if not bucket:
            return []
        return [Match(key, l.run_id, l.function_id, signal.event_id, l.owner_partition)
                for l in bucket.values() if self._hits(l, signal)]

    def remove_listener(self, key: str, run_id: str) -> None:
        bucket = self.listeners.get(key)
        if bucket is not None and bucket.pop(run_id, None) is not None:
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
            gone = [rid for rid, l in bucket.items() if l.expires_at < now_ms]
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


def listener_from_record(record: dict[str, Any]) -> Listener:
    # function ids repeat across many listeners: intern them (about 60 B less per listener)
    return Listener(record["run_id"], sys.intern(record["function_id"]), record["trigger_event_id"],
                    record["trigger_received_at"], record["expires_at"], record.get("residual"),
                    record.get("owner_partition", -1))


def signal_from_record(record: dict[str, Any]) -> Signal:
    return Signal(record["event_id"], record["received_at"], record["event"])

