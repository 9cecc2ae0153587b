"""Event-id deduplication, as Inngest does it: a second event with an id already seen in the last 24 h
(whatever its ``ts``) starts nothing.

One table per events partition, kept in the partition's state store (:class:`SeenEvents`); the matcher writes
each entry to the compacted ``event-ids`` topic in the same transaction as what the event caused, and that topic
is the store's changelog, so a restarted matcher restores it exactly (from the store's offset on). Events are
keyed by id (the API, ``client.send`` and ``pipeline send`` do so), so every copy of one id lands on one
partition and meets its table.

A table entry remembers *which record* was first (its offset). Reading that same record again (a replay of
the topic, a restart before the commit) is not a duplicate: it is processed again, and the run ids derived
from it make that a no-op where it already happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Message

from ..kafka.store import Store
from ..kafka.tables import StoredTable


@dataclass(frozen=True, slots=True)
class Seen:
    """The first record of one event id: where it sits and when the broker received it."""

    offset: int
    first_seen: int


_ID, _BY_TIME, _COUNT = b"i", b"t", b"\x01count"


def _be(n: int) -> bytes:
    return max(n, 0).to_bytes(8, "big")


class SeenEvents(StoredTable):
    """Event ids seen on one events partition within the window, in the partition's state store
    (:mod:`pipeline.kafka.store`): ``i<event id>`` → its first record's offset and receive time, and
    ``t<receive time><event id>`` so that expiry reads the oldest first and only what has expired. A day of ids
    at thousands of events a second is disk, not memory."""

    def __init__(self, store: Store, window_ms: int,
                 replay: Callable[[SeenEvents, Message], object] | None = None) -> None:
        super().__init__(store)
        self.window_ms = window_ms
        self.replay = replay  # applies one event-ids record (the matcher's decoder, for restores)
        raw = store.get(_COUNT)
        self._count = int.from_bytes(raw, "big") if raw else 0
        # The last id read and its entry: the matcher asks about each event's id twice (is it a duplicate, then
        # remember it), and each write reads the old entry first; one store read serves all three. Every change
        # goes through _put, which updates it; an abort or a wipe forgets it.
        self._last: tuple[str, Seen | None] | None = None
        self._count_changed = False

    def __len__(self) -> int:
        return self._count

    def _first(self, event_id: str) -> Seen | None:
        last = self._last
        if last is not None and last[0] == event_id:
            return last[1]
        raw = self.store.get(_ID + event_id.encode())
        seen = None if raw is None else Seen(int.from_bytes(raw[:8], "big", signed=True),
                                             int.from_bytes(raw[8:], "big", signed=True))
        self._last = (event_id, seen)
        return seen

    def _put(self, event_id: str, seen: Seen | None) -> None:
        """Replace the id's entry (and its place in the time index) with ``seen`` (None: forget it)."""
        key = event_id.encode()
        old = self._first(event_id)
        self._last = (event_id, seen)
        store = self.store
        if old is not None:
            store.delete(_BY_TIME + _be(old.first_seen) + key)
        if seen is None:
            if old is not None:
                store.delete(_ID + key)
                self._add(-1)
            return
        value = seen.offset.to_bytes(8, "big", signed=True) + seen.first_seen.to_bytes(8, "big", signed=True)
        store.put(_ID + key, value)
        store.put(_BY_TIME + _be(seen.first_seen) + key, b"")
        if old is None:
            self._add(1)

    def _add(self, delta: int) -> None:
        """The count changes in memory; it is written once per commit, with the entries (:meth:`commit`)."""
        self._count += delta
        self._count_changed = True

    def commit(self, offset: int | None) -> None:
        if self._count_changed:
            self.store.put(_COUNT, self._count.to_bytes(8, "big"))
            self._count_changed = False
        super().commit(offset)

    def is_duplicate(self, event_id: str, offset: int, received_at: int) -> bool:
        """True if another record with this id was received within the window before this one."""
        first = self._first(event_id)
        return (first is not None and first.offset != offset
                and received_at - first.first_seen < self.window_ms)

    def remember(self, event_id: str, offset: int, received_at: int) -> bool:
        """Record this record as the first of its id; False if it already is (nothing new to write)."""
        first = self._first(event_id)
        if first is not None and first.offset == offset:
            return False
        self._put(event_id, Seen(offset, received_at))  # a window restarted after expiry: a new first record
        return True

    def restore(self, event_id: str, seen: Seen | None) -> None:
        """Apply one decoded changelog entry (None: a tombstone) during a restore."""
        self._put(event_id, seen)

    def load(self, msg: Message) -> None:
        """Apply one ``event-ids`` record during a restore: the matcher's decoder (``replay``) reads it."""
        if self.replay is None:
            raise ValueError("this table cannot replay records")
        self.replay(self, msg)

    def expire(self, now_ms: int) -> list[str]:
        """Forget the ids first seen longer than the window ago; returns them, for tombstones."""
        cutoff = now_ms - self.window_ms
        gone = [key[9:].decode() for key, _ in self.store.scan(_BY_TIME, _BY_TIME + _be(cutoff))]
        for event_id in gone:
            self._put(event_id, None)
        return gone

    def abort(self) -> None:
        super().abort()
        self._last = None
        raw = self.store.get(_COUNT)
        self._count = int.from_bytes(raw, "big") if raw else 0
        self._count_changed = False

    def wipe(self) -> None:
        super().wipe()
        self._last = None
        self._count = 0
        self._count_changed = False

    def close(self) -> None:
        super().close()
        self._last = None
