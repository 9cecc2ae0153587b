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

Listeners and signals live in the partition's state store (:class:`CancelIndex`), not in memory.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Message

from ..expr import Expr, ExprError, compile_expr
from ..kafka.store import Store
from ..kafka.tables import StoredTable


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
    expires_at: int | None = None  # the listener's, so that removing it needs no read of the store

    @property
    def ident(self) -> str:
        return self.run_id if self.wait_step is None else f"{self.run_id}\x1e{self.wait_step}"


# Stored listeners and signals are JSON arrays written and read with orjson (a fifth of the stdlib's cost per
# signal); stores written by the stdlib encoder read the same (JSON either way: only non-ASCII is spelled apart).
_dumps, _loads = orjson.dumps, orjson.loads


def _listener_bytes(listener: Listener) -> bytes:
    return _dumps([listener.run_id, listener.function_id, listener.trigger_event_id,
                   listener.trigger_received_at, listener.expires_at, listener.residual,
                   listener.owner_partition, listener.wait_step])


def _listener_of(raw: bytes) -> Listener:
    f = _loads(raw)
    return Listener(f[0], sys.intern(f[1]), f[2], f[3], f[4], f[5], f[6], f[7])


def _signal_bytes(signal: Signal) -> bytes:
    return _dumps([signal.event_id, signal.received_at, signal.event])


def _signal_of(raw: bytes) -> Signal:
    f = _loads(raw)
    return Signal(f[0], f[1], f[2])


def _be(n: int) -> bytes:
    return n.to_bytes(8, "big") if n > 0 else _ZERO


_ZERO = bytes(8)


# Store keys (join keys and ids never hold NUL: the cancel-index record key separates them with it)
_LISTENER, _SIGNAL, _LISTENER_EXPIRY, _SIGNAL_EXPIRY = b"l", b"s", b"e", b"x"
_COUNTS = b"\x01counts"


class CancelIndex(StoredTable):
    """Listeners and signals of one cancel-index partition, in its state store (:mod:`pipeline.kafka.store`).

    Why a store: a million listeners took 742 MiB as Python objects, and a restart replayed all of them before the
    first cancel. Keys, sorted so that every question is one range scan:

    * ``l<join key>\\0<ident>``: a listener; a signal asks for every listener of its join key;
    * ``s<join key>\\0<received at, 8 bytes><event id>``: a signal, oldest first within its join key;
    * ``e<expires at><join key>\\0<ident>`` and ``x<received at><join key>\\0<event id>``: the expiry indexes, so
      the sweep reads only what has expired.

    Counts of listeners and signals are kept in the store too (and in attributes another thread may read)."""

    def __init__(self, store: Store, signal_window_ms: int,
                 replay: Callable[[CancelIndex, Message], object] | None = None) -> None:
        super().__init__(store)
        self.signal_window_ms = signal_window_ms
        self.replay = replay  # applies one cancel-index record without matching (the canceller's, for restores)
        self._residuals: dict[str, Expr | None] = {}
        raw = store.get(_COUNTS)
        self.listener_count, self.signal_count = (int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")) \
            if raw else (0, 0)

    def _count(self, listeners: int = 0, signals: int = 0) -> None:
        self.listener_count += listeners
        self.signal_count += signals

    def commit(self, offset: int | None) -> None:
        self.store.put(_COUNTS, _be(self.listener_count) + _be(self.signal_count))
        super().commit(offset)

    # -- updates -------------------------------------------------------------------------------------------

    def add_listener(self, key: str, listener: Listener, *, match: bool = True) -> list[Match]:
        """Register a listener; with ``match``, also check it against the signals already kept."""
        join = key.encode() + b"\x00"
        ident = listener.ident.encode()
        store = self.store
        lkey = _LISTENER + join + ident
        old = store.get(lkey)
        if old is None:
            self._count(listeners=1)
        else:
            store.delete(_LISTENER_EXPIRY + _be(_listener_of(old).expires_at) + join + ident)
        store.put(lkey, _listener_bytes(listener))
        store.put(_LISTENER_EXPIRY + _be(listener.expires_at) + join + ident, b"")
        if not match:
            return []
        for _, raw in store.scan(_SIGNAL + join, _SIGNAL + key.encode() + b"\x01"):  # oldest first: a wait gets
            signal = _signal_of(raw)  # the first event after it began
            if self._hits(listener, signal):
                return [_match(key, listener, signal)]
        return []

    def add_signal(self, key: str, signal: Signal, *, match: bool = True) -> list[Match]:
        """Keep a signal for the window; with ``match``, return the listeners it cancels."""
        join = key.encode() + b"\x00"
        event = signal.event_id.encode()
        skey = _SIGNAL + join + _be(signal.received_at) + event
        store = self.store
        if store.get(skey) is None:
            self._count(signals=1)
        store.put(skey, _signal_bytes(signal))
        store.put(_SIGNAL_EXPIRY + _be(signal.received_at) + join + event, b"")
        if not match:
            return []
        found = []
        for _, raw in store.scan(_LISTENER + join, _LISTENER + key.encode() + b"\x01"):
            listener = _listener_of(raw)
            if self._hits(listener, signal):
                found.append(_match(key, listener, signal))
        return found

    def remove_listener(self, key: str, ident: str, expires_at: int | None = None) -> None:
        """Forget a listener by its :attr:`Listener.ident` (the run id for a cancel_on listener). ``expires_at``:
        the listener is known to be stored with that expiry (it was just matched), so it is not read again."""
        join = key.encode() + b"\x00"
        lkey = _LISTENER + join + ident.encode()
        if expires_at is None:
            raw = self.store.get(lkey)
            if raw is None:
                return
            expires_at = _listener_of(raw).expires_at
        self.store.delete(lkey)
        self.store.delete(_LISTENER_EXPIRY + _be(expires_at) + join + ident.encode())
        self._count(listeners=-1)

    def remove_signal(self, key: str, event_id: str) -> None:
        join = key.encode() + b"\x00"
        for skey, raw in list(self.store.scan(_SIGNAL + join, _SIGNAL + key.encode() + b"\x01")):
            signal = _signal_of(raw)
            if signal.event_id == event_id:
                self.store.delete(skey)
                self.store.delete(_SIGNAL_EXPIRY + _be(signal.received_at) + join + event_id.encode())
                self._count(signals=-1)

    def listeners_of(self, key: str) -> list[Listener]:
        join = key.encode() + b"\x00"
        return [_listener_of(raw) for _, raw in self.store.scan(_LISTENER + join, _LISTENER + key.encode() + b"\x01")]

    # -- expiry --------------------------------------------------------------------------------------------

    def expired(self, now_ms: int) -> Iterator[tuple[str, str, str]]:
        """Yield ("listener"|"signal", join key, id) for everything past its time, removing it (read from the
        expiry indexes: only what has expired)."""
        horizon = now_ms - self.signal_window_ms
        for ekey, _ in list(self.store.scan(_SIGNAL_EXPIRY, _SIGNAL_EXPIRY + _be(horizon))):
            join, _, event_id = ekey[9:].partition(b"\x00")
            self.remove_signal(join.decode(), event_id.decode())
            self.store.delete(ekey)
            yield "signal", join.decode(), event_id.decode()
        for ekey, _ in list(self.store.scan(_LISTENER_EXPIRY, _LISTENER_EXPIRY + _be(now_ms))):
            join, _, ident = ekey[9:].partition(b"\x00")
            self.remove_listener(join.decode(), ident.decode())
            self.store.delete(ekey)
            yield "listener", join.decode(), ident.decode()

    def load(self, msg: Message) -> None:
        if self.replay is None:
            raise ValueError("this index cannot replay records")
        self.replay(self, msg)

    def abort(self) -> None:
        super().abort()
        self._reload_counts()

    def wipe(self) -> None:
        super().wipe()
        self.listener_count = self.signal_count = 0

    def _reload_counts(self) -> None:
        raw = self.store.get(_COUNTS)
        self.listener_count, self.signal_count = (int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")) \
            if raw else (0, 0)

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
        return Match(key, listener.run_id, listener.function_id, signal.event_id, listener.owner_partition,
                     expires_at=listener.expires_at)
    return Match(key, listener.run_id, listener.function_id, signal.event_id, listener.owner_partition,
                 listener.wait_step, signal.event, listener.expires_at)


def listener_from_record(record: dict[str, Any]) -> Listener:
    # function ids repeat across many listeners: intern them (about 60 B less per listener)
    return Listener(record["run_id"], sys.intern(record["function_id"]), record["trigger_event_id"],
                    record["trigger_received_at"], record["expires_at"], record.get("residual"),
                    record.get("owner_partition", -1), record.get("wait_step"))


def signal_from_record(record: dict[str, Any]) -> Signal:
    return Signal(record["event_id"], record["received_at"], record["event"])

