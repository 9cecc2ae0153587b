"""Concurrency slots of one run owner (pure, no Kafka).

A function's ``concurrency=[Concurrency(limit, key)]`` names slot sets (``function, entry, key
value``). The matcher sends every run that shares a slot set to one owner partition, so this
owner sees all of them and counts exactly: a run takes one slot of each of its sets before an
invocation goes to a worker, and gives them back when the outcome lands or the run ends.
Runs that find a set full wait in its queue, first come first served, or by rank for a function with
``priority`` (:mod:`.priority`: a run with a higher rank goes ahead of the runs waiting longer).

The table is derived from run states (:func:`pipeline.run_owner.state.holds_slot`, ``held``), so a
new owner rebuilds it from the compacted ``runs`` topic like everything else. Given an
:class:`~pipeline.run_owner.undo.UndoLog`, every change logs its inverse there (a record that fails
gives its slots and queue places back).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .undo import UndoLog


class Slots:
    """Slots in use per set and the queue of runs waiting for each set."""

    def __init__(self, undo: UndoLog | None = None) -> None:
        self.used: dict[str, int] = {}
        self.waiting: dict[str, deque[str]] = {}
        self.ranks: dict[str, tuple[Any, ...]] = {}  # run id -> rank, for the runs waiting with one
        self.undo = undo

    def blocked_by(self, keys: list[str], limits: list[int]) -> str | None:
        """The first set among ``keys`` that has no free slot, or None."""
        for key, limit in zip(keys, limits, strict=False):
            if self.used.get(key, 0) >= limit:
                return key
        return None

    def take(self, keys: list[str]) -> None:
        if self.undo is not None:
            self.undo.add(self._set_used, [(key, self.used.get(key)) for key in keys])
        for key in keys:
            self.used[key] = self.used.get(key, 0) + 1

    def give_back(self, keys: list[str]) -> None:
        if self.undo is not None:
            self.undo.add(self._set_used, [(key, self.used.get(key)) for key in keys])
        for key in keys:
            n = self.used.get(key, 0) - 1
            if n > 0:
                self.used[key] = n
            else:
                self.used.pop(key, None)

    def wait(self, key: str, run_id: str, rank: tuple[Any, ...] = ()) -> None:
        """Queue ``run_id`` for ``key``: last, or with a ``rank`` after every run ranked at or before it."""
        queue = self.waiting.setdefault(key, deque())
        at = len(queue)
        if rank:
            self.ranks[run_id] = rank
            ranks = self.ranks
            while at > 0 and ranks.get(queue[at - 1], ()) > rank:
                at -= 1
        queue.insert(at, run_id)
        if self.undo is not None:
            self.undo.add(self._unwait, key, at, run_id)

    def next_waiting(self, key: str) -> str | None:
        """The run that has waited longest for ``key`` (removed from the queue)."""
        queue = self.waiting.get(key)
        if not queue:
            return None
        run_id = queue.popleft()
        if not queue:
            del self.waiting[key]
        rank = self.ranks.pop(run_id, None)
        if self.undo is not None:
            self.undo.add(self._insert, key, 0, run_id, rank)
        return run_id

    def forget(self, run_id: str) -> None:
        """Drop an ended run from every queue (rare: a cancel while waiting)."""
        for key in list(self.waiting):
            queue = self.waiting[key]
            if run_id in queue:
                at = queue.index(run_id)
                del queue[at]
                if not queue:
                    del self.waiting[key]
                rank = self.ranks.pop(run_id, None)
                if self.undo is not None:
                    self.undo.add(self._insert, key, at, run_id, rank)

    # -- undo ----------------------------------------------------------------------------------------------

    def _set_used(self, counts: list[tuple[str, int | None]]) -> None:
        for key, n in counts:
            if n is None:
                self.used.pop(key, None)
            else:
                self.used[key] = n

    def _unwait(self, key: str, at: int, run_id: str) -> None:
        queue = self.waiting[key]
        del queue[at]
        if not queue:
            del self.waiting[key]
        self.ranks.pop(run_id, None)

    def _insert(self, key: str, at: int, run_id: str, rank: tuple[Any, ...] | None = None) -> None:
        self.waiting.setdefault(key, deque()).insert(at, run_id)
        if rank:
            self.ranks[run_id] = rank

    def waiting_count(self) -> int:
        return sum(len(q) for q in self.waiting.values())
