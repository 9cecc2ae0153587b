"""On a 3-broker cluster (replication 3, min.insync 2, acks=all), killing one broker mid-run loses nothing:
every run that was started is cancelled exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pipeline.broker import embedded
from pipeline.testing.stack import Stack

from .apps import app
from .clusters import own_cluster

# Not in the default run (its own 3-node cluster, ~40 s): `pytest -m chaos`. A service thread can block in
# producer.send_offsets_to_transaction while the group coordinator fails over (librdkafka #5456/#5511);
# the stack's watchdog then replaces that service, as `pipeline run` would exit 70 and be restarted.
pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]  # own cluster + faults
CANCELLED = "inngest/function.cancelled"


@pytest.fixture
def cluster() -> Iterator[tuple[str, str]]:
    with own_cluster(3, "e2e3") as named:
        yield named


def test_one_broker_killed_mid_run_loses_nothing(cluster: tuple[str, str]) -> None:
    name, bootstrap = cluster
    runs = 30
    with Stack(app, bootstrap, replication_factor=3, stall_timeout_s=15) as stack:
        for i in range(runs):
            stack.send("test/long", {"key": f"n{i}", "sleep": 300}, id=f"N{i}")
        deadline = time.monotonic() + 90
        while sum(r["status"] == "Sleeping" for r in stack.latest_runs().values()) < runs // 2:
            assert time.monotonic() < deadline, f"runs did not start\n{stack.snapshot()}"
            time.sleep(0.2)
        assert embedded.kill_node(name, 1)  # mid-run: some runs may still be starting
        deadline = time.monotonic() + 120
        while sum(r["status"] == "Sleeping" for r in stack.latest_runs().values()) < runs:
            assert time.monotonic() < deadline, f"runs were lost with the broker\n{stack.snapshot()}"
            time.sleep(0.2)
        for i in range(runs):
            stack.send("test/cancel", {"key": f"n{i}"}, id=f"X{i}")
        stack.wait_system_event(CANCELLED, timeout=120, count=runs)
        time.sleep(2)
        cancelled = stack.system_events_named(CANCELLED)
        print(f"\nservices replaced by the watchdog: {stack.replaced}")
    assert len(cancelled) == runs
    assert {e["data"]["event"]["id"] for e in cancelled} == {f"N{i}" for i in range(runs)}
