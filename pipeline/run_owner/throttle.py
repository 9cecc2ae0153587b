"""Throttled functions in the run owner: run starts paced per throttle key, the runs over the limit held in order.

``Throttle(limit, period, key, burst)`` routes every run of a key to one owner partition (``Function.owner_key``),
so this owner sees every start of the key and decides exactly (:mod:`.pacing` has the arithmetic).

* Only a run's *first* invocation is throttled (``Queued``, ``seq == 0``): steps never are.
* A run that may not start yet is held (``held="throttle"``) in its key's queue, ordered by priority then by
  when it was scheduled (:func:`order`). Only the queue's head has a timer: its ``wake_at`` is when the next
  start is allowed, so the release is an ordinary run timer (the run table's timer index keeps it through a
  restart). For a function with cancel rules the released head then passes the watermark gate like a woken
  sleep (a cancel event received before the release time is never missed), still the head, and takes its token
  only when it comes back from the gate: a slow gate delays starts, it never bunches them.
* A start uses one token: the key's pacing state moves on, in the owner's ``throttles`` store (a compacted
  changelog of that name, written in the same transaction as the run's dispatch). A waiting run that is
  cancelled (or times out) uses none: it leaves the queue, and the next head gets the timer.
* The queues are memory only, derived at assignment from the run table's held index (:meth:`Throttles.rebuild`).

Every in-memory change logs its inverse in the owner's undo log, so a record that fails changes nothing.
"""

from __future__ import annotations

import bisect
import json
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

from ..kafka import metrics
from ..kafka.emitter import Emitter
from ..kafka.store import Store
from ..kafka.tables import PartitionTables, StoredTable, StoredTables
from ..sdk.function import Function
from . import state as st
from .pacing import Pace
from .priority import Rank, rank
from .undo import UndoLog

if TYPE_CHECKING:
    from .owner import RunOwner

Entry = Rank  # (scheduled time - priority, scheduled time, run id)


def order(state: dict[str, Any], fn: Function) -> Entry:
    """A waiting run's place in its throttle queue: by priority from when it was scheduled (:mod:`.priority`)."""
    return rank(state, fn, int(state["queued_at"]))


def waits_for_token(state: dict[str, Any]) -> bool:
    """Whether a run of a throttled function is in its key's queue: not started yet, held for its throttle or, as
    the released head, at the gate (a run that took its token and then waits elsewhere has ``seq`` 0 only while
    it waits for a concurrency slot)."""
    return not st.is_ended(state) and state["seq"] == 0 and state.get("held") in (st.THROTTLE, st.GATE)


def pace_of(fn: Function) -> Pace:
    t = fn.throttle
    assert t is not None
    return Pace(limit=t.limit, period_ms=t.period_ms, burst=t.burst, strict=t.strict)


_IDLE = b"\x00"  # index: _IDLE + idle time (8 bytes) + throttle key (throttle keys never start with a NUL)
EXPIRE_PER_START = 8  # idle keys removed with each start: the store shrinks as fast as it can grow


def _idle_key(raw_key: bytes, value: bytes | None) -> bytes | None:
    if value is None:
        return None
    idle_at = json.loads(value).get("idle_at")
    return None if idle_at is None else _IDLE + max(int(idle_at), 0).to_bytes(8, "big") + raw_key


class PacingTable(StoredTable):
    """throttle key -> pacing state (JSON), of one partition, in its store; restored from ``throttles``. An index
    by idle time (derived from each value, also on restore) finds the keys whose state limits nothing any more."""

    def __init__(self, store: Store, undo: UndoLog) -> None:
        super().__init__(store)
        self.undo = undo

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.store.get(key.encode())
        return None if raw is None else dict(json.loads(raw))

    def put(self, key: str, value: bytes | None) -> None:
        """Set (None: remove) a key's state; undone if the record fails."""
        raw = key.encode()
        old = self.store.get(raw)
        self._set(raw, old, value)
        self.undo.add(self._set, raw, value, old)

    def idle(self, now: int, limit: int) -> list[str]:
        """Up to ``limit`` keys whose state has been idle since ``now`` or before, longest idle first."""
        out = []
        for key, _ in self.store.scan(_IDLE, _IDLE + (max(now, 0) + 1).to_bytes(8, "big")):
            out.append(key[9:].decode())
            if len(out) >= limit:
                break
        return out

    def _set(self, raw: bytes, old: bytes | None, new: bytes | None) -> None:
        store = self.store
        was, now = _idle_key(raw, old), _idle_key(raw, new)
        if was != now:
            if was is not None:
                store.delete(was)
            if now is not None:
                store.put(now, b"")
        if new is None:
            store.delete(raw)
        else:
            store.put(raw, new)

    def load(self, msg: Message) -> None:
        key, value = msg.key(), msg.value()
        if key is None:
            raise ValueError("a throttles record without a key")
        if value is not None:
            json.loads(value)  # a record that is not JSON fails here (dead-lettered), not at the next start
        self._set(key, self.store.get(key), value)


class Throttles:
    """The throttle queues and pacing states of the owner's partitions (see the module)."""

    def __init__(self, owner: RunOwner, changelog: str) -> None:
        self.owner = owner
        self.changelog = changelog
        self.states: StoredTables[PacingTable] = StoredTables(
            owner.commands_topic, lambda store: PacingTable(store, owner.undo), changelog=changelog,
            label="run-owner throttles")
        self.queues: PartitionTables[dict[str, list[Entry]]] = PartitionTables(owner.commands_topic, dict)

    # -- the owner's calls ---------------------------------------------------------------------------------

    def before_start(self, state: dict[str, Any], fn: Function, p: int, out: Emitter,
                     now: int) -> dict[str, Any] | None:
        """The owner's ``advance`` for a run of a throttled function: the state to go on with (the throttle does
        not apply, or the run took its token), or None (held, written)."""
        if state["seq"] != 0 or state["status"] != "Queued" or state.get("finishing") is not None \
                or state.get("held") not in (None, st.THROTTLE, st.GATE):
            return state  # started already, or waiting for a slot after its token
        if state.get("held") == st.GATE:  # released by the throttle, back from the gate: take the token
            metrics.GATE_WAIT.observe(max(0, now - state["ready_at"]) / 1000)
            state = st.gate_passed(state, now)
        owner = self.owner
        return self.admit(state, fn, p, out, now, gate=bool(fn.cancels) and owner.settings.gate_max_wait_ms > 0)

    def admit(self, state: dict[str, Any], fn: Function, p: int, out: Emitter, now: int, *,
              gate: bool) -> dict[str, Any] | None:
        """A run about to start: its state released to go on (a token used), or None (held, written).

        ``gate``: a run that waited must first pass the watermark gate at its release time (its function has
        cancel rules): it waits there as the queue's head, and uses its token when it comes back, so the gate's
        own wait never bunches starts together."""
        assert fn.throttle is not None
        key = fn.throttle.key_of(fn.id, json.loads(state["event"]))
        queue = self._queue(p, key)
        entry = order(state, fn)
        if entry not in queue:
            self._insert(queue, entry)
        pace = pace_of(fn)
        if queue[0] != entry:
            self._hold(state, None, p, out)
            return None
        tokens = self.states[p]
        allowed = pace.allowed_at(tokens.get(key), now)
        if allowed > now:
            self._hold(state, allowed, p, out)
            return None
        if gate and state.get("held") == st.THROTTLE:
            gated = st.throttle_gated(state, now)
            self.owner._write(gated, p, out)
            self.owner.gates.add(p, gated["ready_at"], gated["run_id"])
            return None
        self._remove(queue, entry)
        self._expire(p, out, now)
        value = json.dumps(pace.started(tokens.get(key), now)).encode()
        tokens.put(key, value)
        out.send(self.changelog, key, None, value, partition=p)
        self._arm_head(key, queue, fn, p, out, now)
        return st.throttle_released(state, now)

    def forget(self, old: dict[str, Any], fn: Function | None, p: int, out: Emitter, now: int) -> None:
        """A held run ended (cancelled, timed out) before it started: it leaves its queue, no token used; if it
        was the head, the next run gets the timer."""
        if fn is None or fn.throttle is None or not waits_for_token(old):
            return
        key = fn.throttle.key_of(fn.id, json.loads(old["event"]))
        queue = self._queue(p, key)
        entry = order(old, fn)
        if entry in queue:
            was_head = queue[0] == entry
            self._remove(queue, entry)
            if was_head:
                self._arm_head(key, queue, fn, p, out, now)

    def rebuild(self, p: int, held: list[dict[str, Any]]) -> None:
        """The queues of a restored partition, from its runs held for a throttle (an assignment)."""
        queues: dict[str, list[Entry]] = {}
        for state in held:
            fn = self.owner.registry.by_id.get(state["function_id"])
            if fn is None or fn.throttle is None:
                continue
            key = fn.throttle.key_of(fn.id, json.loads(state["event"]))
            queues.setdefault(key, []).append(order(state, fn))
        for queue in queues.values():
            queue.sort()
        self.queues[p] = queues

    def waiting(self) -> int:
        return sum(len(q) for queues in self.queues.values() for q in queues.values())

    # -- internals -----------------------------------------------------------------------------------------

    def _expire(self, p: int, out: Emitter, now: int) -> None:
        """Remove a few idle keys' states (tombstones on the changelog): an idle state decides exactly as none."""
        tokens = self.states[p]
        for key in tokens.idle(now, EXPIRE_PER_START):
            tokens.put(key, None)
            out.send(self.changelog, key, None, None, partition=p)

    def _queue(self, p: int, key: str) -> list[Entry]:
        queues = self.queues.get(p)
        if queues is None:
            queues = self.queues[p] = {}
        queue = queues.get(key)
        if queue is None:
            queue = queues[key] = []
        return queue

    def _insert(self, queue: list[Entry], entry: Entry) -> None:
        bisect.insort(queue, entry)
        self.owner.undo.add(queue.remove, entry)

    def _remove(self, queue: list[Entry], entry: Entry) -> None:
        queue.remove(entry)
        self.owner.undo.add(bisect.insort, queue, entry)

    def _hold(self, state: dict[str, Any], release_at: int | None, p: int, out: Emitter) -> None:
        held = st.throttle_held(state, release_at)
        self.owner._write(held, p, out)
        self.owner.arm(held, p)

    def _arm_head(self, key: str, queue: list[Entry], fn: Function, p: int, out: Emitter, now: int) -> None:
        """Give the queue's (new) head its release timer: when the key's next start is allowed."""
        table = self.owner.tables[p]
        while queue:
            head = table.get(queue[0][2])
            if head is None or not waits_for_token(head):
                self._remove(queue, queue[0])  # not waiting any more (cannot happen; a stale entry never blocks)
                continue
            if head.get("held") == st.GATE:
                return  # released already, at the gate: it takes its token when it passes
            release_at = pace_of(fn).allowed_at(self.states[p].get(key), now)
            if head.get("wake_at") != release_at:
                self._hold(head, release_at, p, out)
            return
