"""Event-id deduplication, as Inngest does it: a second event with an id already seen in the last 24 h
(whatever its ``ts``) starts nothing.

Pure table logic, one table per events partition; the matcher keeps it in memory and writes each entry to
the compacted ``event-ids`` topic in the same transaction as what the event caused, so a restarted
matcher rebuilds it exactly. Events are keyed by id (the API, ``client.send`` and ``pipeline send`` do so),
so every copy of one id lands on one partition and meets its table.

A table entry remembers *which record* was first (its offset). Reading that same record again (a replay of
the topic, a restart before the commit) is not a duplicate: it is processed again, and the run ids derived
from it make that a no-op where it already happened.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Seen:
    """The first record of one event id: where it sits and when the broker received it."""

    offset: int
    first_seen: int


class SeenEvents:
    """Event ids seen on one events partition within the window, oldest first."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: dict[str, Seen] = {}  # insertion order = first_seen order, enough for expiry

    def __len__(self) -> int:
        return len(self._seen)

    def is_duplicate(self, event_id: str, offset: int, received_at: int) -> bool:
        """True if another record with this id was received within the window before this one."""
        first = self._seen.get(event_id)
        return (first is not None and first.offset != offset
                and received_at - first.first_seen < self.window_ms)

    def remember(self, event_id: str, offset: int, received_at: int) -> bool:
        """Record this record as the first of its id; False if it already is (nothing new to write)."""
        first = self._seen.get(event_id)
        if first is not None and first.offset == offset:
            return False
        self._seen.pop(event_id, None)  # re-inserted at the end: a window restarted after expiry
        self._seen[event_id] = Seen(offset, received_at)
        return True

    def load(self, event_id: str, seen: Seen | None) -> None:
        """Apply one changelog record (None: a tombstone) during a restore."""
        self._seen.pop(event_id, None)
        if seen is not None:
            self._seen[event_id] = seen

    def expire(self, now_ms: int) -> list[str]:
        """Forget the ids first seen longer than the window ago; returns them, for tombstones."""
        cutoff = now_ms - self.window_ms
        gone: list[str] = []
        for event_id, seen in self._seen.items():
            if seen.first_seen >= cutoff:
                break
            gone.append(event_id)
        for event_id in gone:
            del self._seen[event_id]
        return gone
