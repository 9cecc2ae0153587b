"""The run owner's cron ticks: the owner of a function's partition of ``run-commands`` (by function id) fires
its schedules (see :mod:`pipeline.sdk.cron` for the one-run-per-tick and missed-tick rules)."""

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

    def __init__(self, functions: list[Any], events_topic: str, command_partitions: Callable[[], int],
                 clock: Callable[[], int] | None = None) -> None:
        self.functions = [fn for fn in functions if fn.crons]
        self.events_topic = events_topic
        self._count = command_partitions
        self.clocks: dict[tuple[str, int], CronClock] = {}  # (function id, schedule index) -> its clock
        self._partition: dict[str, int] = {}
        # The time (epoch ms) the schedules are read against; None: the ``now`` the owner passes (the wall clock).
        # Tests set their own to cross a minute boundary without waiting for one.
        self.clock = clock

    def assigned(self, parts: list[int], now: int) -> None:
        if not self.functions or not parts:
            return
        now = self.clock() if self.clock is not None else now
        count = self._count()
        for fn in self.functions:
            p = partition_for(fn.id, count)
            if p in parts:
                self._partition[fn.id] = p
                for i, schedule in enumerate(fn.crons):
                    self.clocks[(fn.id, i)] = CronClock(schedule, now)

    def revoked(self, partition: int) -> None:
        gone = {fid for fid, p in self._partition.items() if p == partition}
        self.clocks = {k: c for k, c in self.clocks.items() if k[0] not in gone}

    def fire(self, out: Emitter, now: int, undo: UndoLog) -> None:
        """Send ``inngest/scheduled.timer`` for every due tick; its id and ts come from (function, tick), so the
        run it starts is the same whoever fires it and however often. A clock moved on logs its way back in
        ``undo`` (its tick's event is dropped if the tick fails)."""
        now = self.clock() if self.clock is not None else now
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
