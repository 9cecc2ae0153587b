"""A clock a test sets by hand, for code that reads the time through an injectable ``clock()``.

The run owner's cron ticks read one (``RunOwner.crons.clock``), so a test crosses a minute boundary at once
instead of waiting for the wall clock to reach it::

    clock = ManualClock(minute + 30_000)
    with Stack(cron_app, bootstrap, configure=clock.attach_crons) as stack:
        ...
        clock.set(minute + 61_000)   # the next tick is due now
"""

from __future__ import annotations

import threading
from typing import Any


class ManualClock:
    """Epoch milliseconds that stand still until :meth:`set` or :meth:`advance` moves them."""

    def __init__(self, now_ms: int) -> None:
        self._now = now_ms
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self._now

    def set(self, now_ms: int) -> None:
        with self._lock:
            self._now = now_ms

    def advance(self, ms: int) -> int:
        with self._lock:
            self._now += ms
            return self._now

    def attach_crons(self, name: str, loop: Any) -> None:
        """A ``Stack(configure=...)`` hook: every run owner the stack builds reads its cron ticks off this clock."""
        if name == "run-owner":
            loop.processor.crons.clock = self
