"""Debounce against a real broker (issue 21): one run per burst, with the burst's newest event, through a run owner
SIGKILLed mid-burst, and a deadline that waits for the matcher (the watermark gate)."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from pipeline.api.server import bound_port, start_in_thread, stop
from pipeline.kafka import topics as t
from pipeline.protocol.pending import decode_pending
from pipeline.testing.helpers import await_records
from pipeline.testing.stack import Stack, TopicWatcher
from tests.e2e.procs import service_process
from tests.e2e.test_dev import until as _until

from .flow_app import app

pytestmark = pytest.mark.integration
APP = "tests.integration.flow_app:app"


def _pending(stack: Stack) -> TopicWatcher:
    return TopicWatcher(stack.bootstrap, stack.settings.topic(t.DEBOUNCES),
                        lambda v: None if v is None else decode_pending(v))


def _runs_of(stack: Stack, function_id: str) -> list[dict]:
    return [r for r in stack.latest_runs().values() if r["function_id"] == function_id]


def _owner_up(stack: Stack, event_id: str) -> None:
    stack.send("flow/plain", {}, id=event_id)
    stack.wait_run(lambda r: r["event_id"] == event_id and r["status"] == "Completed", timeout=60,
                   what="a run of a function without flow options")


def test_three_events_with_the_owner_killed_after_the_second_give_one_run_with_the_third(
        kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, services=("matcher", "canceller", "worker")) as stack:
        pending = _pending(stack)
        owner = service_process(stack, "run-owner", "deb-1", app=APP)
        try:
            _owner_up(stack, "warm")  # else d1's deadline may pass while the owner process starts
            stack.send("flow/debounce", {"key": "a"}, id="d1")
            stack.send("flow/debounce", {"key": "b"}, id="other")  # another key: its own run
            stack.send("flow/debounce", {"key": "a"}, id="d2")
            # the owner has committed the pending debounce holding d2 (read_committed watcher)
            pending.wait(lambda recs: any(r and r["commands"][0]["event"].find('"d2"') >= 0 for r in recs), 30,
                         "the pending debounce with d2")
            owner.send_signal(signal.SIGKILL)
            owner.wait(10)
            stack.send("flow/debounce", {"key": "a"}, id="d3")
            owner = service_process(stack, "run-owner", "deb-1", app=APP)
            done = stack.wait_run(lambda r: r["function_id"] == "flow-debounced" and r["status"] == "Completed"
                                  and r["event_id"] == "d3", timeout=60, what="the debounced run")
            stack.wait_run(lambda r: r["event_id"] == "other" and r["status"] == "Completed", timeout=30)
            time.sleep(4)  # a period more: no second run for key a may start
            runs = _runs_of(stack, "flow-debounced")
        finally:
            owner.send_signal(signal.SIGTERM)
            owner.wait(30)
            pending.close()
    assert done["output"] == '"d3"'
    assert sorted(r["event_id"] for r in runs) == ["d3", "other"]


def test_timeout_caps_the_wait_from_the_first_event_and_an_older_ts_does_not_replace(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        now = int(time.time() * 1000)
        sending = time.monotonic()
        stack.send("flow/capped", {}, id="c1", ts=now)
        # c1 is acknowledged (send flushes), so its receive time, from which the timeout counts, is behind us: the
        # sends below are paced from here, and c5, sent 3.2 s later, is received after the deadline however slow
        # c1's send was (in a CI run c5 was received 2.9 s after c1 when the pacing counted from before that send).
        for i in range(2, 6):  # every 0.8 s: the 2 s period never passes, the 3 s timeout does
            time.sleep(0.8)
            stack.send("flow/capped", {}, id=f"c{i}", ts=now + i)
        stack.send("flow/capped", {}, id="old", ts=now - 60_000)  # older ts: neither replaces nor extends
        done = stack.wait_run(lambda r: r["function_id"] == "flow-capped", timeout=30)
        seen = time.monotonic()
        time.sleep(1)
        runs = _runs_of(stack, "flow-capped")
    took = seen - sending
    assert 2.9 <= took < 3.0 + 2.5, f"the run started {took:.1f}s after the first event (timeout 3 s)"
    assert done["event_id"] in {"c2", "c3", "c4"}, done["event_id"]  # the newest received before the timeout (load)
    assert all(r["event_id"] != "old" for r in runs)


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_an_event_sent_just_before_the_deadline_while_the_matcher_is_paused_still_extends_it(
        kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, services=("run-owner", "canceller", "worker")) as stack:
        matcher = service_process(stack, "matcher", "deb-m", app=APP)
        try:
            _owner_up(stack, "warm-m")
            stack.send("flow/debounce", {"key": "s"}, id="s1")
            time.sleep(2.5)  # 0.5 s before the 3 s deadline (counted from s1's receive time)
            os.kill(matcher.pid, signal.SIGSTOP)
            stack.send("flow/debounce", {"key": "s"}, id="s2")
            time.sleep(2.0)  # past the first deadline: the owner holds the debounce at the gate
            assert not _runs_of(stack, "flow-debounced"), "the debounce fired while the matcher was paused"
            os.kill(matcher.pid, signal.SIGCONT)
            done = stack.wait_run(lambda r: r["function_id"] == "flow-debounced", timeout=60)
            time.sleep(4)
            runs = _runs_of(stack, "flow-debounced")
        finally:
            os.kill(matcher.pid, signal.SIGCONT)
            matcher.send_signal(signal.SIGTERM)
            matcher.wait(30)
    assert done["event_id"] == "s2" and len(runs) == 1


def test_a_pending_debounce_is_listed_by_the_api_and_cancelled_by_rest(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap, signing_key="k") as stack:
        server, thread = start_in_thread(stack.settings, "127.0.0.1", 0, wait_ready=True)
        client = httpx.Client(base_url=f"http://127.0.0.1:{bound_port(server)}",
                              headers={"Authorization": "Bearer k"}, timeout=30)
        try:
            stack.send("flow/slow", {"key": "x"}, id="p1")
            stack.send("flow/slow", {"key": "x"}, id="p2")

            def listed() -> list:
                found = client.get("/v1/pending", params={"function": "flow-slow"}).json()["data"]
                return found if found and found[0]["events"] == ["p2"] else []

            (pending,) = _until(listed, 30, "the pending debounce with p2")
            assert pending["kind"] == "debounce" and pending["key"] == '"x"' and pending["event"]["id"] == "p2"
            assert pending["deadline_at"] - pending["last_received_at"] == 300_000
            answer = client.delete(f"/v1/runs/{pending['run_id']}")
            assert answer.status_code == 200 and answer.json()["data"]["pending"] == "debounce", answer.text
            _until(lambda: not client.get("/v1/pending").json()["data"], 30, "the pending debounce gone")
            assert client.delete(f"/v1/pending/{pending['run_id']}").status_code == 404
            stack.send("flow/slow", {"key": "y"}, id="p3")  # and a bulk cancellation covers pending ones too
            _until(lambda: client.get("/v1/pending").json()["data"], 30, "the pending debounce with p3")
            bulk = client.post("/v1/cancellations", json={"app_id": "flow", "function_id": "slow",
                                                          "started_before": int(time.time() * 1000) + 1000})
            assert bulk.status_code == 200, bulk.text
            _until(lambda: not client.get("/v1/pending").json()["data"], 30, "the bulk-cancelled debounce gone")
            assert not _runs_of(stack, "flow-slow")
        finally:
            client.close()
            stop(server, thread)



def test_a_cancel_rule_cancels_the_pending_debounce_of_its_key(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("flow/order", {"id": 1}, id="o1")
        stack.send("flow/order", {"id": 2}, id="o2")
        stack.send("flow/order", {"id": 1}, id="o1b")
        time.sleep(0.5)
        stack.send("flow/order.cancelled", {"id": 1}, id="c1")
        stack.wait_run(lambda r: r["event_id"] == "o2" and r["status"] == "Completed", timeout=30)
        time.sleep(4)  # past key 1's deadline: it must not start
        runs = _runs_of(stack, "flow-order")
    assert [r["event_id"] for r in runs] == ["o2"]


def test_an_event_whose_debounce_key_fails_is_dead_lettered_with_the_reason(kafka_bootstrap: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("flow/debounce", {"other": 1}, id="nokey")  # no data.key: the key cannot be evaluated
        stack.send("flow/debounce", {"key": "k"}, id="good")
        stack.wait_run(lambda r: r["event_id"] == "good" and r["status"] == "Completed", timeout=30)
        (letter,) = await_records(kafka_bootstrap, stack.settings.topic(t.DEAD_LETTER), 1, timeout=30)
        runs = _runs_of(stack, "flow-debounced")
    reason = dict(letter.headers() or [])["dlq.reason"].decode()
    assert "event.data.key" in reason and letter.key() == b"nokey", reason
    assert [r["event_id"] for r in runs] == ["good"]  # never merged with the others under a null key
