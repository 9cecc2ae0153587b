"""Cron schedules (pure): TZ prefix, the latest tick, and the clock an owner fires from."""

from __future__ import annotations

import datetime

import pytest

from pipeline.sdk.cron import BadCron, CronClock, CronSchedule


def ms(h: int, m: int, s: int = 0, day: int = 25) -> int:
    return int(datetime.datetime(2026, 11, day, h, m, s, tzinfo=datetime.UTC).timestamp() * 1000)


def test_latest_and_next_ticks_in_utc_and_in_a_time_zone() -> None:
    every5 = CronSchedule("*/5 * * * *")
    assert every5.latest(ms(5, 35)) == ms(5, 35)  # a tick exactly now is due now
    assert every5.latest(ms(5, 34, 59)) == ms(5, 30)
    assert every5.next_after(ms(5, 35)) == ms(5, 40)
    paris = CronSchedule("TZ=Europe/Paris 0 9 * * *")
    assert paris.latest(ms(5, 38)) == ms(8, 0, day=24)  # 09:00 in Paris is 08:00 UTC in winter
    assert paris.next_after(ms(5, 38)) == ms(8, 0)


def test_an_owner_fires_the_latest_missed_tick_once_then_each_on_time() -> None:
    clock = CronClock(CronSchedule("*/5 * * * *"), now_ms=ms(5, 38))
    assert clock.due(ms(5, 38)) == ms(5, 35)  # down since 05:20: only the latest tick, not 05:20..05:35
    assert clock.due(ms(5, 39)) is None
    assert clock.due(ms(5, 40, 0)) == ms(5, 40)
    assert clock.due(ms(5, 40, 1)) is None
    assert clock.due(ms(5, 56)) == ms(5, 55)  # a late owner skips to the latest tick, once


def test_a_synced_function_gets_no_tick_from_before_its_sync() -> None:
    every5 = CronSchedule("*/5 * * * *")
    assert CronClock(every5, now_ms=ms(5, 38), not_before=ms(5, 36)).due(ms(5, 38)) is None  # 05:35 predates it
    assert CronClock(every5, now_ms=ms(5, 38), not_before=ms(5, 36)).due(ms(5, 40)) == ms(5, 40)
    assert CronClock(every5, now_ms=ms(5, 38), not_before=ms(5, 35)).due(ms(5, 38)) == ms(5, 35)  # synced by then


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "TZ=Nowhere/Land * * * * *", "every minute"])
def test_bad_expressions_are_refused(bad: str) -> None:
    with pytest.raises(BadCron):
        CronSchedule(bad)


class _Sent:
    """Stands in for the owner's Emitter: keeps what the ticks send."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    def send(self, _topic: str, _key: str, _schema: str, value: dict[str, object]) -> None:
        self.events.append(value)


def test_cron_functions_synced_while_the_owner_runs_fire_from_their_next_tick_and_stop_when_removed() -> None:
    from typing import Any

    from pipeline.apps.register import read_sync
    from pipeline.run_owner.crons import CronTicks
    from pipeline.run_owner.undo import UndoLog
    from pipeline.sdk.app import Registry
    from pipeline.sdk.synced import synced_function

    url = "http://127.0.0.1:3000/api/inngest"
    body = {"appName": "app", "url": url, "functions": [{
        "id": "app-tick", "triggers": [{"cron": "*/5 * * * *"}],
        "steps": {"step": {"runtime": {"url": f"{url}?fnId=app-tick&stepId=step"}}}}]}
    registry = Registry([])
    ticks = CronTicks(registry, "events", lambda: 1)
    ticks.assigned([0], ms(5, 38))
    out: Any = _Sent()
    ticks.fire(out, ms(5, 38), UndoLog())
    assert ticks.clocks == {} and out.events == []
    (record,) = read_sync(body, 1000).functions
    registry.put([synced_function(record)])  # synced at 05:38: the 05:35 tick is not fired for it
    ticks.fire(out, ms(5, 39), UndoLog())
    assert out.events == []
    ticks.fire(out, ms(5, 40), UndoLog())
    ticks.fire(out, ms(5, 41), UndoLog())
    assert [e["ts"] for e in out.events] == [ms(5, 40)]
    registry.put([], ["app-tick"])
    ticks.fire(out, ms(5, 45), UndoLog())
    assert ticks.clocks == {} and len(out.events) == 1
