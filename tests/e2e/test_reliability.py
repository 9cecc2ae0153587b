"""Crash-only services (issue: never lose a cancel): a poison record on a compacted topic never crash-loops a
restore, and every way a ``pipeline run`` process ends has its exit code."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest

from pipeline.kafka import topics as t
from pipeline.testing.helpers import await_records, produce
from pipeline.testing.stack import Stack

from .apps import app
from .procs import service_process
from .test_health import free_port

pytestmark = pytest.mark.integration
POISON = b"\x00\x01\x02 not a record of any schema"


def _alive(procs: dict[str, subprocess.Popen]) -> dict[str, int | None]:
    return {name: proc.poll() for name, proc in procs.items()}


def _cancel_one(stack: Stack, key: str) -> None:
    stack.send("test/long", {"key": key, "sleep": 120}, id=f"run-{key}")
    stack.wait_run(lambda r: r["function_id"] == "e2e-long" and r["event_id"] == f"run-{key}"
                   and r["status"] == "Sleeping", timeout=60)
    stack.send("test/cancel", {"key": key}, id=f"cancel-{key}")
    stack.wait_run(lambda r: r["event_id"] == f"run-{key}" and r["status"] == "Cancelled", timeout=30)


def test_poison_on_each_compacted_topic_is_dead_lettered_at_every_restore_and_the_services_go_on(
        kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, services=("matcher", "worker")) as stack:
        topic = stack.settings.topic
        for name in (t.RUNS, t.CANCEL_INDEX, t.CANCELLATIONS):
            for partition in range(1 if name == t.CANCELLATIONS else stack.settings.partitions):
                produce(kafka_bootstrap, topic(name), [POISON], key=f"poison-{partition}",
                        config={"partitioner": "murmur2_random"} if partition else None)
        procs = {name: service_process(stack, name, f"{name}-poison") for name in ("run-owner", "canceller")}
        try:
            _cancel_one(stack, "before-restart")
            assert _alive(procs) == {"run-owner": None, "canceller": None}
            for proc in procs.values():  # a restart restores from the same poisoned topics
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            procs = {name: service_process(stack, name, f"{name}-poison") for name in ("run-owner", "canceller")}
            _cancel_one(stack, "after-restart")
            time.sleep(1)
            assert _alive(procs) == {"run-owner": None, "canceller": None}
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait(10)

        def header(msg, name: str) -> str:  # type: ignore[no-untyped-def]
            return dict(msg.headers() or [])[name].decode()

        letters = await_records(kafka_bootstrap, topic(t.DEAD_LETTER), 2, timeout=20,
                                predicate=lambda m: m.value() == POISON and header(m, "dlq.service") == "run-owner"
                                and header(m, "dlq.source.topic") == topic(t.RUNS))
        listeners = await_records(kafka_bootstrap, topic(t.DEAD_LETTER), 2, timeout=20,
                                  predicate=lambda m: m.value() == POISON and header(m, "dlq.service") == "canceller")
    assert all(header(m, "dlq.reason") for m in letters + listeners)
    assert {header(m, "dlq.source.topic") for m in listeners} == {topic(t.CANCEL_INDEX)}


def _wait_ready(proc: subprocess.Popen, port: int, timeout: float = 60) -> None:
    """Until the process's /readyz says 200: it joined its group, restored and initialised its transactions."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"exited with {proc.returncode} before it was ready"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "never became ready"
        time.sleep(0.05)


def test_exit_codes_fenced_instance_exits_non_zero_and_sigterm_exits_zero(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, services=()) as stack:
        ports = [free_port(), free_port()]
        first = service_process(stack, "canceller", "same-id", PIPELINE_HEALTH_PORT=str(ports[0]))
        second = None
        try:
            _wait_ready(first, ports[0])  # joined its group and initialised its transactions
            second = service_process(stack, "canceller", "same-id",  # a misconfigured twin fences it
                                     PIPELINE_HEALTH_PORT=str(ports[1]))
            first.wait(30)
            assert first.returncode not in (0, None), "a fenced service must exit non-zero"
            _wait_ready(second, ports[1])  # the twin lives on: it took over the group membership
            assert second.poll() is None
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, "SIGTERM is a requested stop: exit 0 after the last commit"
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
