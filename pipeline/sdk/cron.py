"""Cron schedules (``TriggerCron``): parsing with its optional ``TZ=`` prefix, and which tick is due.

The run owner that owns a function's partition of ``run-commands`` (``partition_for(function id)``) fires its
ticks: for a tick at T it sends ``inngest/scheduled.timer`` with an id derived from (function, T) and ``ts`` T, so
the run id is the same however often, or by however many owners, that tick is fired; the matcher's event-id
dedup and the owner's "a start for an existing run is a no-op" keep it to one run.

Ticks missed while no owner ran are **not** replayed one by one: when an owner takes the partition, it fires
only the latest tick not after now (once: a tick the previous owner already fired starts nothing new), then
follows the schedule. That is Inngest's behaviour too: no backfill of a schedule.
"""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

UTC = datetime.UTC


class BadCron(ValueError):
    """A cron expression (or its TZ) that cannot be parsed."""


class CronSchedule:
    """One cron expression; times are epoch milliseconds."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        text = expression.strip()
        self.tz: datetime.tzinfo = UTC
        if text.startswith(("TZ=", "CRON_TZ=")):
            zone, _, text = text.partition(" ")
            try:
                self.tz = ZoneInfo(zone.split("=", 1)[1])
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise BadCron(f"unknown time zone in {expression!r}") from exc
        self.spec = text.strip()
        try:
            next(CronSim(self.spec, datetime.datetime.now(self.tz)))
        except (CronSimError, StopIteration) as exc:
            raise BadCron(f"invalid cron expression {expression!r}: {exc}") from exc

    def _at(self, ms: int) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz)

    def latest(self, now_ms: int) -> int:
        """The latest tick at or before ``now_ms``."""
        after = self._at(now_ms + 1000).replace(second=0, microsecond=0)  # the minute of now, included
        tick = next(CronSim(self.spec, after + datetime.timedelta(minutes=1), reverse=True))
        while int(tick.timestamp() * 1000) > now_ms:  # reverse iteration may start at the minute itself
            tick = next(CronSim(self.spec, tick, reverse=True))
        return int(tick.timestamp() * 1000)

    def next_after(self, ms: int) -> int:
        """The first tick strictly after ``ms``."""
        return int(next(CronSim(self.spec, self._at(ms))).timestamp() * 1000)


class CronClock:
    """The ticks one owner fires for one schedule: the latest one when it starts (``latest``; else from the next
    one: a function synced while the owner runs), then each on time. A latest tick before ``not_before`` (the
    time a synced function was synced) is not fired: the function did not exist then."""

    def __init__(self, schedule: CronSchedule, now_ms: int, *, latest: bool = True, not_before: int = 0) -> None:
        self.schedule = schedule
        last = schedule.latest(now_ms)
        self.next_at = last if latest and last >= not_before else schedule.next_after(now_ms)

    def due(self, now_ms: int) -> int | None:
        """The tick to fire now, if one is due (at most one per call: a late owner skips to the latest)."""
        if now_ms < self.next_at:
            return None
        tick = self.schedule.latest(now_ms)
        self.next_at = self.schedule.next_after(now_ms)
        return tick
