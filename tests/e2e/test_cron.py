"""``TriggerCron`` on a real broker: exactly one run per tick with two run owners, across an owner restart,
and across a minute boundary; a tick missed before start is fired once (the latest), not replayed."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.kafka.loop import run_in_thread
from pipeline.sdk.cron import CronSchedule
from pipeline.testing.stack import Stack

from .apps import cron_app

pytestmark = pytest.mark.integration


def ticks(stack: Stack) -> list[int]:
    return sorted(json.loads(r["event"])["ts"] for r in stack.latest_runs().values())


def test_one_run_per_tick_whoever_fires_it(kafka_bootstrap: str) -> None:
    schedule = CronSchedule("* * * * *")
    with Stack(cron_app, kafka_bootstrap) as stack:
        second = stack.build_loop("run-owner", instance_id="second-owner")  # two owners share the partitions
        thread = run_in_thread(second)
        try:
            first = stack.wait_run(lambda r: r["status"] == "Completed", timeout=60)
            assert json.loads(first["output"])["cron"] == "* * * * *"
            stack.stop_service("run-owner")  # the restarted owner fires the latest tick again: no second run
            stack.start_service("run-owner")
            boundary = schedule.next_after(int(time.time() * 1000))
            time.sleep(max(0.0, boundary / 1000 - time.time()) + 6)  # past the next tick
            seen = ticks(stack)
        finally:
            second.stop()
            thread.join(30)
    expected = {schedule.latest(json.loads(first["event"])["ts"]), boundary}
    assert len(seen) == len(set(seen)), seen  # never two runs for one tick
    assert expected <= set(seen) and all(t % 60_000 == 0 for t in seen), seen
    assert max(seen) <= boundary
