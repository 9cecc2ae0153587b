"""What the run owner changed in memory for the record (or tick) being processed, so that it can be undone.

A record that fails is dead-lettered and its output dropped; everything it changed in memory must go back too,
or memory runs ahead of what is written: a run taken off a slot queue by a record that then failed would wait,
unqueued, until the next rebalance rebuilt the queues. The table has its own undo (:mod:`.writes`); the rest
(slot counts and queues, timers, gate waits, cron clocks, the bulk-rule sweep) logs the inverse of each change
here as it makes it. :meth:`UndoLog.rollback` applies them newest first; :meth:`UndoLog.begin` forgets them when
the next record starts. A change costs one append; nothing is copied.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Timer = tuple[int, str, int]  # (when, run id, partition)


class UndoLog:
    """Inverse operations of the current record's in-memory changes, oldest first."""

    __slots__ = ("_ops",)

    def __init__(self) -> None:
        self._ops: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def __len__(self) -> int:
        return len(self._ops)

    def add(self, undo: Callable[..., object], *args: Any) -> None:
        """``undo(*args)`` reverses a change just made."""
        self._ops.append((undo, args))

    def begin(self) -> None:
        """A new record (or tick) starts: the last one's changes stay."""
        self._ops.clear()

    def rollback(self) -> None:
        """Reverse every change since :meth:`begin`, newest first."""
        ops, self._ops = self._ops, []
        for undo, args in reversed(ops):
            undo(*args)
        self._ops.clear()  # nothing an undo did is itself undoable


TIMER_HORIZON_MS = 60_000  # timers due this far ahead are in memory; the rest only in the run table's index
TIMER_LOAD_AHEAD_MS = 10_000  # the horizon moves on this long before it is reached


class Timers:
    """The owner's timer heap (sleeps, retry backoffs, timeouts, wait timeouts), derived from run states: an entry
    may be stale (the tick checks the run's state), a missing one is a run that never wakes.

    Only the timers due before :attr:`horizon` are here: the run table keeps every run's next timer in an index
    sorted by due time (:mod:`.table`), and the owner loads the next window from it as the horizon nears
    (:meth:`extend`), so a million runs sleeping for a week cost no memory here."""

    def __init__(self, undo: UndoLog) -> None:
        self.heap: list[Timer] = []
        self.undo = undo
        self.horizon = 0  # timers due at or after it are in the run tables' index only

    def __len__(self) -> int:
        return len(self.heap)

    def next_at(self) -> int | None:
        """When the earliest timer in memory is due (it may be stale), or None."""
        return self.heap[0][0] if self.heap else None

    def needs_extending(self, now: int) -> bool:
        return now + TIMER_LOAD_AHEAD_MS >= self.horizon

    def extend(self, now: int, load: Callable[[int, int], Iterable[Timer]]) -> None:
        """Move the horizon to ``now + TIMER_HORIZON_MS``, with the timers ``load(old, new)`` finds due between
        (not undoable: a tick that fails after it keeps the new horizon, so it must keep the timers too)."""
        start, stop = self.horizon, now + TIMER_HORIZON_MS
        if stop <= start:
            return
        for entry in load(start, stop):
            heapq.heappush(self.heap, entry)
        self.horizon = stop

    def arm(self, at: int, run_id: str, p: int) -> None:
        if at >= self.horizon:
            return  # in the run table's timer index; loaded when the horizon reaches it
        entry = (at, run_id, p)
        heapq.heappush(self.heap, entry)
        self.undo.add(self._disarm, entry)

    def due(self, now: int) -> Iterator[Timer]:
        """Pop the entries due at ``now``, earliest first."""
        heap = self.heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            self.undo.add(heapq.heappush, heap, entry)
            yield entry

    def load(self, entries: Iterable[Timer]) -> None:
        """Entries from a run table's index (an assignment: not undoable, not in a record)."""
        for entry in entries:
            heapq.heappush(self.heap, entry)

    def keep(self, keep: Callable[[int], bool]) -> None:
        """Keep only the entries whose partition passes ``keep`` (a rebalance: not undoable, not in a record)."""
        self.heap = [entry for entry in self.heap if keep(entry[2])]
        heapq.heapify(self.heap)

    def drop(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self.keep(lambda p: p not in gone)

    def _disarm(self, entry: Timer) -> None:
        self.heap.remove(entry)
        heapq.heapify(self.heap)
