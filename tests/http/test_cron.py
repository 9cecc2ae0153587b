"""A cron trigger of an inngest-py app synced over HTTP, fired by the run owners' cron machinery: one run per
tick with two run owners, from the first tick after the sync. The owners read their ticks off a ManualClock
(pipeline/testing/clock.py), so the test crosses minute boundaries by setting it, not by waiting for them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline.kafka.loop import run_in_thread
from pipeline.testing.clock import ManualClock

from .harness import HttpStack, python_app

pytestmark = pytest.mark.integration
TICKER = "py-cron-app-ticker"


def test_a_synced_cron_function_runs_once_per_tick(kafka_bootstrap: str, tmp_path: Path) -> None:
    minute = (int(time.time() * 1000) // 60_000 - 3) * 60_000  # a few minutes back: the clock is the test's
    clock = ManualClock(minute + 30_000)
    with HttpStack(kafka_bootstrap, configure=clock.attach_crons) as http, \
            python_app(http.api_port, "py_cron_app", tmp_path) as app:
        stack = http.stack
        second = stack.build_loop("run-owner", instance_id="second-owner")  # two owners share the partitions
        thread = run_in_thread(second)
        try:
            answer = http.sync(app, {TICKER})
            assert answer["modified"] is True and answer["functions"][0]["triggers"] == [{"cron": "* * * * *"}]
            owners = [stack.loops["run-owner"].processor.crons, second.processor.crons]
            # the owner of the function's partition has its schedule (it reads the synced function off the
            # functions topic and starts a clock at its next tick; done before the test clock jumps ahead)
            http.wait_until(lambda: any((TICKER, 0) in o.clocks for o in owners), "a clock for the schedule")
            ticks = [minute + 60_000, minute + 120_000, minute + 180_000]
            for tick in ticks:  # synced half a minute after `minute`: its first tick is the next one
                clock.set(tick + 1000)
                run = stack.wait_run(lambda r, tick=tick: r["function_id"] == TICKER and r["status"] == "Completed"
                                     and json.loads(r["event"])["ts"] == tick, timeout=60, what=f"the run of {tick}")
                assert json.loads(run["output"]) == {"name": "inngest/scheduled.timer", "cron": "* * * * *"}, \
                    app.output()[-2000:]
            seen = sorted(json.loads(r["event"])["ts"] for r in stack.latest_runs().values()
                          if r["function_id"] == TICKER)
        finally:
            second.stop()
            thread.join(30)
    assert seen == ticks, seen  # each tick once (two owners), none before the sync, none missed
