"""The run owner's cron ticks: the owner of a function's partition of ``run-commands`` (by function id) fires
its schedules (see :mod:`pipeline.sdk.cron` for the one-run-per-tick and missed-tick rules).

Cron functions come from code (``--app``) and from apps synced over HTTP, which come and go while the owner
runs: at each tick the clocks are brought in line with the registry (a ``by_id`` dict that is replaced, never
changed, on every sync), on the loop's thread. A function that appears on a partition already held starts at
its next tick (no run for a tick that passed before it was synced); one whose partition is assigned fires the
latest tick not after now, once, as before, unless that tick came before the function was synced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..kafka.emitter import Emitter
from ..protocol.ids import derived_ulid
from ..protocol.keys import partition_for
from ..protocol.sysevents import SCHEDULED_TIMER
from ..sdk.cron import CronClock
from ..serde import EVENT
from ..serde.models import event_dict_to_record
from .undo import UndoLog

log = logging.getLogger("pipeline.run-owner")


class CronTicks:
    """Clocks for the cron functions whose scheduling partition this owner holds."""

    def __init__(self, registry: Any, events_topic: str, command_partitions: Callable[[], int],
                 clock: Callable[[], int] | None = None) -> None:
        self.registry = registry  # its ``by_id``: every function, from code and synced
        self.events_topic = events_topic
        self._count_of = command_partitions
        self._count: int | None = None  # run-commands' partition count, asked once (only if there are crons)
        self.clocks: dict[tuple[str, int], CronClock] = {}  # (function id, schedule index) -> its clock
        self._partition: dict[str, int] = {}  # function id -> its scheduling partition, for the clocks held
        self._held: set[int] = set()
        self._seen: Any = None  # the registry's by_id the clocks were last brought in line with
        # The time (epoch ms) the schedules are read against; None: the ``now`` the owner passes (the wall clock).
        # Tests set their own to cross a minute boundary without waiting for one.
        self.clock = clock

    def assigned(self, parts: list[int], now: int) -> None:
        self._held |= set(parts)
        self._align(self.clock() if self.clock is not None else now, fresh=set(parts))

    def revoked(self, partition: int) -> None:
        self._held.discard(partition)
        gone = {fid for fid, p in self._partition.items() if p == partition}
        self._partition = {fid: p for fid, p in self._partition.items() if fid not in gone}
        self.clocks = {k: c for k, c in self.clocks.items() if k[0] not in gone}

    def _align(self, now: int, fresh: set[int]) -> None:
        """Clocks for exactly the cron schedules of the held partitions: those of ``fresh`` (just assigned) start
        at the latest tick, new or changed schedules on partitions held before at their next tick, the rest
        keep their clock."""
        by_id = self.registry.by_id
        self._seen = by_id
        crons = [fn for fn in by_id.values() if fn.crons]
        if not crons or not self._held:
            self.clocks, self._partition = {}, {}
            return
        if self._count is None:
            self._count = self._count_of()
        clocks: dict[tuple[str, int], CronClock] = {}
        partitions: dict[str, int] = {}
        for fn in crons:
            p = partition_for(fn.id, self._count)
            if p not in self._held:
                continue
            partitions[fn.id] = p
            for i, schedule in enumerate(fn.crons):
                old = self.clocks.get((fn.id, i))
                if p in fresh:  # a synced function's ticks from before its sync are not caught up
                    clocks[(fn.id, i)] = CronClock(schedule, now, not_before=getattr(fn, "synced_at", 0))
                elif old is not None and old.schedule.expression == schedule.expression:
                    clocks[(fn.id, i)] = old
                else:
                    clocks[(fn.id, i)] = CronClock(schedule, now, latest=False)
        self.clocks, self._partition = clocks, partitions

    def fire(self, out: Emitter, now: int, undo: UndoLog) -> None:
        """Send ``inngest/scheduled.timer`` for every due tick; its id and ts come from (function, tick), so the
        run it starts is the same whoever fires it and however often. A clock moved on logs its way back in
        ``undo`` (its tick's event is dropped if the tick fails)."""
        now = self.clock() if self.clock is not None else now
        if self.registry.by_id is not self._seen:  # functions synced, re-synced or removed since
            self._align(now, fresh=set())
        for (fn_id, i), clock in self.clocks.items():
            next_at = clock.next_at
            tick = clock.due(now)
            if tick is None:
                continue
            undo.add(setattr, clock, "next_at", next_at)
            cron = clock.schedule.expression
            event_id = derived_ulid(tick, "cron", fn_id, str(i), str(tick))
            event = {"id": event_id, "name": SCHEDULED_TIMER,
                     "data": {"cron": cron, "_inngest": {"fn_id": fn_id}}, "user": {}, "ts": tick, "v": None}
            out.send(self.events_topic, event_id, EVENT, event_dict_to_record(event))
            log.info("cron tick fired", extra={"function_id": fn_id, "cron": cron, "tick": tick})
