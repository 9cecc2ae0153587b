"""Which offsets of ``invocations`` a worker may commit while handlers run side by side.

Handlers finish out of order, so a partition's committed offset may only reach its oldest invocation still
running: committing past it would lose that invocation if the worker died (it runs again elsewhere instead).
"""

from __future__ import annotations

import threading


class InflightOffsets:
    """Per partition: offsets still running, and the next offset after everything consumed (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, set[int]] = {}
        self.next: dict[int, int] = {}
        self.committed: dict[int, int] = {}

    def begin(self, partition: int, offset: int) -> None:
        with self.lock:
            self.running.setdefault(partition, set()).add(offset)
            self.next[partition] = max(self.next.get(partition, 0), offset + 1)

    def done(self, partition: int, offset: int) -> None:
        with self.lock:
            self.running.get(partition, set()).discard(offset)

    def count(self, partitions: set[int] | None = None) -> int:
        with self.lock:
            return sum(len(v) for p, v in self.running.items() if partitions is None or p in partitions)

    def committable(self) -> dict[int, int]:
        """Offsets safe to commit that were not committed yet: up to the oldest invocation still running."""
        with self.lock:
            out = {}
            for p, nxt in self.next.items():
                running = self.running.get(p)
                offset = min(running) if running else nxt
                if offset > self.committed.get(p, -1):
                    out[p] = offset
            return out

    def forget(self, partitions: set[int]) -> None:
        with self.lock:
            for p in partitions:
                self.running.pop(p, None)
                self.next.pop(p, None)
                self.committed.pop(p, None)
