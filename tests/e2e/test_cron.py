"""``TriggerCron`` on a real broker: exactly one run per tick with two run owners, across an owner restart,
and across minute boundaries; a tick missed before start is fired once (the latest), not replayed.

The owners read their cron ticks off a :class:`~pipeline.testing.clock.ManualClock` (the run owner's injectable
cron clock), so the test crosses a minute boundary by setting the clock instead of waiting for the wall clock."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.kafka.loop import run_in_thread
from pipeline.sdk.cron import CronSchedule
from pipeline.testing.clock import ManualClock
from pipeline.testing.stack import Stack

from .apps import cron_app

pytestmark = pytest.mark.integration


def ticks(stack: Stack) -> list[int]:
    return sorted(json.loads(r["event"])["ts"] for r in stack.latest_runs().values())


def test_one_run_per_tick_whoever_fires_it(kafka_bootstrap: str) -> None:
    schedule = CronSchedule("* * * * *")
    minute = (int(time.time() * 1000) // 60_000 - 3) * 60_000  # a few minutes back: every tick is in the past
    clock = ManualClock(minute + 30_000)  # half a minute after a tick: started late, it fires that one only
    with Stack(cron_app, kafka_bootstrap, configure=clock.attach_crons) as stack:
        second = stack.build_loop("run-owner", instance_id="second-owner")  # two owners share the partitions
        thread = run_in_thread(second)
        try:
            first = stack.wait_run(lambda r: r["status"] == "Completed", timeout=60)
            assert json.loads(first["output"])["cron"] == "* * * * *"
            assert json.loads(first["event"])["ts"] == minute  # the latest tick before the start, not older ones
            stack.stop_service("run-owner")  # the restarted owner fires the latest tick again: no second run
            stack.start_service("run-owner")
            boundary = schedule.next_after(clock())
            clock.set(boundary + 1000)  # past the next tick
            stack.wait_run(lambda r: json.loads(r["event"])["ts"] == boundary and r["status"] == "Completed",
                           timeout=60, what="the run of the next tick")
            # The tick after that is the marker: whichever owner fired `boundary` has moved past it (its clock
            # fires one tick per call, in order), so a second run for `minute` or `boundary` would be seen by now.
            marker = schedule.next_after(boundary)
            clock.set(marker + 1000)
            stack.wait_run(lambda r: json.loads(r["event"])["ts"] == marker and r["status"] == "Completed",
                           timeout=60, what="the run of the marker tick")
            seen = ticks(stack)
        finally:
            second.stop()
            thread.join(30)
    assert len(seen) == len(set(seen)), seen  # never two runs for one tick
    assert seen == [minute, boundary, marker], seen  # each tick once, none missed, none replayed
    assert all(t % 60_000 == 0 for t in seen), seen
