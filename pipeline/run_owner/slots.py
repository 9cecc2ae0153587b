"""Concurrency slots of one run owner (pure, no Kafka).

A function's ``concurrency=[Concurrency(limit, key)]`` names slot sets (``function, entry, key
value``). The matcher sends every run that shares a slot set to one owner partition, so this
owner sees all of them and counts exactly: a run takes one slot of each of its sets before an
invocation goes to a worker, and gives them back when the outcome lands or the run ends.
Runs that find a set full wait in its queue, first come first served.

The table is derived from run states (:func:`pipeline.run_owner.state.holds_slot`, ``held``), so a
new owner rebuilds it from the compacted ``runs`` topic like everything else.
"""

from __future__ import annotations

from collections import deque


class Slots:
    """Slots in use per set and the queue of runs waiting for each set."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}
        self.waiting: dict[str, deque[str]] = {}

    def blocked_by(self, keys: list[str], limits: list[int]) -> str | None:
        """The first set among ``keys`` that has no free slot, or None."""
        for key, limit in zip(keys, limits):
            if self.used.get(key, 0) >= limit:
                return key
        return None

    def take(self, keys: list[str]) -> None:
        for key in keys:
            self.used[key] = self.used.get(key, 0) + 1

    def give_back(self, keys: list[str]) -> None:
        for key in keys:
            n = self.used.get(key, 0) - 1
            if n > 0:
                self.used[key] = n
            else:
                self.used.pop(key, None)

    def wait(self, key: str, run_id: str) -> None:
        self.waiting.setdefault(key, deque()).append(run_id)

    def next_waiting(self, key: str) -> str | None:
        """The run that has waited longest for ``key`` (removed from the queue)."""
        queue = self.waiting.get(key)
        if not queue:
            return None
        run_id = queue.popleft()
        if not queue:
            del self.waiting[key]
        return run_id

    def forget(self, run_id: str) -> None:
        """Drop an ended run from every queue (rare: a cancel while waiting)."""
        for key in list(self.waiting):
            queue = self.waiting[key]
            if run_id in queue:
                queue.remove(run_id)
                if not queue:
                    del self.waiting[key]

    def waiting_count(self) -> int:
        return sum(len(q) for q in self.waiting.values())
