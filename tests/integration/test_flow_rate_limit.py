"""Rate limit, idempotency and a rate-limited ``step.invoke`` against a real broker, with the run owner SIGKILLed
at the worst moments: right after it committed the first admit, and in the middle of a burst.

The run owner runs as a ``pipeline run run-owner`` process (the test kills it and starts it again with the same
instance id, which fences its last transaction); matcher, canceller and worker run in the test's process."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.kafka import topics as t
from pipeline.serde import DROPPED_EVENT, Serde
from pipeline.testing import await_records
from pipeline.testing.stack import Stack
from tests.e2e.procs import service_process

from .flow_drop_app import app, charge, child, parent, sync_account

pytestmark = pytest.mark.integration
APP = "tests.integration.flow_drop_app:app"
SERDE = Serde()


def _owner(stack: Stack, **env: str) -> subprocess.Popen[bytes]:
    return service_process(stack, "run-owner", "flow-drop-owner", app=APP, **env)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _runs(stack: Stack, fn_id: str, field: str, value: Any) -> list[dict[str, Any]]:
    return [r for r in stack.latest_runs().values()
            if r["function_id"] == fn_id and json.loads(r["event"])["data"].get(field) == value]


def _dropped(stack: Stack, fn_id: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    return await_records(stack.bootstrap, stack.settings.topic(t.DROPPED_EVENTS), count, timeout,
                         predicate=lambda d: d["function_id"] == fn_id,
                         decode=lambda v: SERDE.decode_as(DROPPED_EVENT, v))


def _no_more_dropped(stack: Stack, fn_id: str, count: int) -> None:
    with pytest.raises(AssertionError):
        _dropped(stack, fn_id, count + 1, timeout=3)


def test_a_burst_after_a_killed_first_admit_admits_nothing_more_for_its_key(kafka_bootstrap: str,
                                                                             tmp_path: Path) -> None:
    """limit 1 per 90 s per account: the owner is killed the moment the first run is committed, and again in the
    middle of a burst of 12; one run for the account, 12 recorded drops, and other accounts still run. Each
    restart has an empty state directory (as on another host), so the state comes from the changelog alone."""
    with Stack(app, kafka_bootstrap, services=("matcher", "canceller", "worker"), partitions=2) as stack:

        def admitted(account: str) -> None:
            stack.send("flow/sync", {"account": account, "n": -1})
            stack.wait_run(lambda r: r["function_id"] == sync_account.id and r["status"] == "Completed"
                           and json.loads(r["event"])["data"]["account"] == account, timeout=60, what=account)

        owner = _owner(stack)
        try:
            stack.send("flow/sync", {"account": "acme", "n": 0})
            stack.wait_run(lambda r: r["function_id"] == sync_account.id, timeout=60, what="the first admit")
            _kill(owner)  # committed: its admit is in rate-limits with its offset; the store may not have it yet
            owner = _owner(stack, PIPELINE_STATE_DIR=str(tmp_path / "b"))
            admitted("globex")  # the new owner has its partitions
            for n in range(1, 13):
                stack.send("flow/sync", {"account": "acme", "n": n}, flush=False)
            stack.flush()
            time.sleep(0.2)  # mid-burst: some of it decided, in a transaction not yet committed
            _kill(owner)
            owner = _owner(stack, PIPELINE_STATE_DIR=str(tmp_path / "c"))
            admitted("initech")
            dropped = _dropped(stack, sync_account.id, 12)
            _no_more_dropped(stack, sync_account.id, 12)
        finally:
            _kill(owner)
        acme = _runs(stack, sync_account.id, "account", "acme")
    assert [json.loads(r["event"])["data"]["n"] for r in acme] == [0]
    assert sorted(json.loads(d["event"])["data"]["n"] for d in dropped) == list(range(1, 13))
    assert {(d["reason"], d["key"]) for d in dropped} == {("rate_limit", '"acme"')}
    assert all(d["received_at"] <= d["dropped_at"] for d in dropped)


def test_one_run_per_idempotency_key_through_kills_and_a_new_one_after_the_window(kafka_bootstrap: str,
                                                                                   tmp_path: Path) -> None:
    """3 events with one order id, the owner killed between them (restarted on an empty state directory, then on
    the first owner's store): one run. After the window (20 s here, in the broker's receive time), the same order
    id starts a run again."""
    window = {"PIPELINE_IDEMPOTENCY_WINDOW_MS": "20000"}  # longer than the kills and restarts take under load
    with Stack(app, kafka_bootstrap, services=("matcher", "canceller", "worker"), partitions=2) as stack:
        owner = _owner(stack, **window)
        try:
            stack.send("flow/charge", {"order": 42, "n": 1})
            first = stack.wait_run(lambda r: r["function_id"] == charge.id, timeout=60, what="the first charge")
            _kill(owner)
            owner = _owner(stack, PIPELINE_STATE_DIR=str(tmp_path / "b"), **window)
            stack.send("flow/charge", {"order": 42, "n": 2})
            _kill(owner)  # at once: the second may or may not have been decided (and committed) before the kill
            owner = _owner(stack, **window)  # back on the first owner's store: it reads the changelog's tail only
            stack.send("flow/charge", {"order": 42, "n": 3})
            dropped = _dropped(stack, charge.id, 2)
            _no_more_dropped(stack, charge.id, 2)
            assert len(_runs(stack, charge.id, "order", 42)) == 1
            # the window counts from the first event's receive time (the broker's clock, this host's too)
            assert all(d["received_at"] < first["received_at"] + 20_000 for d in dropped)  # inside the window
            time.sleep(max(0.0, (first["received_at"] + 20_500) / 1000 - time.time()))
            stack.send("flow/charge", {"order": 42, "n": 4})
            stack.wait_run(lambda r: r["function_id"] == charge.id and json.loads(r["event"])["data"]["n"] == 4,
                           timeout=60, what="a run after the window")
        finally:
            _kill(owner)
        runs = _runs(stack, charge.id, "order", 42)
    assert sorted(json.loads(r["event"])["data"]["n"] for r in runs) == [1, 4]
    assert sorted(json.loads(d["event"])["data"]["n"] for d in dropped) == [2, 3]
    assert {d["reason"] for d in dropped} == {"idempotency"}


def test_a_rate_limited_invoke_fails_its_caller_instead_of_hanging(kafka_bootstrap: str) -> None:
    """The child admits one run per 90 s: of two parents, one gets the child's result, the other's step.invoke
    raises StepError at once (not after its 5-minute timeout)."""
    with Stack(app, kafka_bootstrap, partitions=2) as stack:
        stack.send("flow/parent", {"n": 1})
        stack.wait_run(lambda r: r["function_id"] == parent.id and r["status"] == "Completed", timeout=60)
        stack.send("flow/parent", {"n": 2})
        second = stack.wait_run(lambda r: r["function_id"] == parent.id and r["status"] == "Completed"
                                and json.loads(r["event"])["data"]["n"] == 2, timeout=60, what="the second parent")
        first = stack.wait_run(lambda r: r["function_id"] == parent.id and r["status"] == "Completed"
                               and json.loads(r["event"])["data"]["n"] == 1, timeout=5)
        children = [r for r in stack.latest_runs().values() if r["function_id"] == child.id]
    assert json.loads(first["output"]) == {"child": "child ran"}
    assert json.loads(second["output"]) == {"error": "invoked function is rate limited"}
    assert len(children) == 1
