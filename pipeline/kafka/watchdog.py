"""Crash-only supervision: a process whose service loop stops making progress exits at once, non-zero.

Some Kafka calls can block past their own timeout: librdkafka's ``send_offsets_to_transaction`` waits
for good while the group coordinator fails over (librdkafka issues #5456, #5511). A thread cannot be
interrupted out of a C call, and no partial recovery is worth its risk, so the answer is crash-only:
everything the services write is transactional, so exiting is always safe, and the supervisor (compose,
systemd, ``pipeline dev``) starts a fresh process that fences the old one and resumes from the committed
offsets.

Each loop owns a :class:`Heart` and beats it once per iteration (and per batch while it rebuilds state,
through :func:`beat`). The :class:`Watchdog` thread checks every heart; one silent for longer than the
limit trips it: the stalled thread's stack is logged (so the hang can be diagnosed) and the process
exits with :data:`EXIT_STALLED`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

from . import metrics

log = logging.getLogger("pipeline.watchdog")

EXIT_STALLED = 70  # EX_SOFTWARE: distinct from 1 (a service failed) so an operator can tell a hang
_local = threading.local()


class Heart:
    """The progress mark of one loop: the time of its last beat, and the thread that beats it."""

    __slots__ = ("last", "name", "thread_id")

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.last = clock()
        self.thread_id: int | None = None

    def beat(self) -> None:
        """Mark progress. Called by the owning thread once per loop iteration: one attribute write."""
        self.last = time.monotonic()

    def attach(self) -> None:
        """Make this the calling thread's heart, so long work deep in the stack (a restore) can :func:`beat`."""
        self.thread_id = threading.get_ident()
        _local.heart = self
        self.beat()


def beat() -> None:
    """Beat the calling thread's heart, if it has one (state restores call this once per batch)."""
    heart = getattr(_local, "heart", None)
    if heart is not None:
        heart.last = time.monotonic()


def _exit_stalled(heart: Heart, silent: float) -> None:
    os._exit(EXIT_STALLED)


class Watchdog:
    """Watches hearts from its own thread; any heart silent for ``limit`` seconds trips ``on_stall``."""

    def __init__(self, limit: float, *, on_stall: Callable[[Heart, float], None] = _exit_stalled,
                 clock: Callable[[], float] = time.monotonic, interval: float = 0.5) -> None:
        self.limit = limit
        self.on_stall = on_stall
        self.clock = clock
        self.interval = interval
        self.hearts: list[Heart] = []
        self._stop = threading.Event()

    def watch(self, heart: Heart) -> Heart:
        """Start watching ``heart`` (counted from now, so a loop that has not started yet is not stalled)."""
        heart.last = self.clock()
        self.hearts.append(heart)
        return heart

    def stalled(self) -> list[tuple[Heart, float]]:
        """The hearts silent for longer than the limit, with how long: pure, for tests and for the thread."""
        now = self.clock()
        return [(h, now - h.last) for h in self.hearts if now - h.last > self.limit]

    def check(self) -> bool:
        """One round: report each stalled heart, stop watching it and trip ``on_stall`` (which exits, or, in
        an in-process test stack, replaces the service and watches the new heart). True if one tripped."""
        tripped = False
        for heart, silent in self.stalled():
            frame = sys._current_frames().get(heart.thread_id) if heart.thread_id else None
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(thread gone)"
            metrics.WATCHDOG_TRIPS.labels(heart.name).inc()
            log.critical("service made no progress; exiting so that a fresh process takes over",
                         extra={"service": heart.name, "silent_seconds": round(silent, 1),
                                "limit_seconds": self.limit, "stack": stack})
            for handler in logging.getLogger().handlers:
                handler.flush()
            self.hearts.remove(heart)
            self.on_stall(heart, silent)
            tripped = True
        return tripped

    def start(self) -> threading.Thread:
        """Check every ``interval`` seconds in a daemon thread until :meth:`stop`."""
        def run() -> None:
            while not self._stop.wait(self.interval):
                self.check()

        thread = threading.Thread(target=run, name="watchdog", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
