"""A TypeScript function with steps (inngest 3.x): step.run, a sleep (a time string), two steps in parallel
(Promise.all: planned together, run side by side, then exactly one follow-up call), a waitForEvent with and
without its event, and a cancel during the sleep."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .harness import HttpStack, node_app

pytestmark = pytest.mark.integration
FN = "ts-steps-onboarding"


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def test_steps_sleep_parallel_wait_and_cancel_during_sleep(kafka_bootstrap: str, tmp_path: Path) -> None:
    with HttpStack(kafka_bootstrap) as http, node_app(http.api_port, "steps", tmp_path) as app:
        http.sync(app, {FN})
        stack = http.stack
        matched, timed_out, cancelled = (str(uuid.uuid4()) for _ in range(3))
        http.send({"name": "user/signed.up", "data": {"userId": matched, "waitFor": "30s"}})
        http.send({"name": "user/signed.up", "data": {"userId": timed_out, "waitFor": "1s"}})
        http.send({"name": "user/signed.up", "data": {"userId": cancelled, "sleep": "1m"}})

        def of(user: str) -> Any:
            return lambda r: r["function_id"] == FN and json.loads(r["event"])["data"]["userId"] == user

        sleeping = stack.wait_run(lambda r: of(cancelled)(r) and r["status"] == "Sleeping", timeout=30)
        http.send({"name": "user/deleted", "data": {"userId": cancelled}})
        gone = stack.wait_run(lambda r: of(cancelled)(r) and r["status"] == "Cancelled", timeout=30)
        assert gone["run_id"] == sleeping["run_id"] and gone["pending_step"] is None

        stack.wait_run(lambda r: of(matched)(r) and r["status"] == "Waiting", timeout=30)
        http.send({"name": "user/upgraded", "data": {"userId": matched, "plan": "pro"}})
        done = stack.wait_run(lambda r: of(matched)(r) and r["status"] in ("Completed", "Failed"), timeout=30)
        assert done["status"] == "Completed", (done["error"], app.output()[-2000:])
        assert json.loads(done["output"]) == {"user": {"id": matched, "plan": "free"}, "a": f"{matched}-left",
                                              "b": f"{matched}-right",
                                              "upgraded": {"userId": matched, "plan": "pro"}}
        steps = {s["id"]: s for s in done["steps"]}
        assert list(steps) == [sha1("load-user"), sha1("pause"), *sorted([sha1("left"), sha1("right")],
                               key=lambda k: list(steps).index(k)), sha1("wait-upgrade")]
        assert json.loads(steps[sha1("load-user")]["output"]) == {"data": {"id": matched, "plan": "free"}}
        # the two parallel steps completed together, in one outcome
        assert steps[sha1("left")]["completed_at"] == steps[sha1("right")]["completed_at"]
        assert done["seq"] == 5  # invocations: load-user, sleep, the parallel pair (and its follow-ups), wait, end

        late = stack.wait_run(lambda r: of(timed_out)(r) and r["status"] in ("Completed", "Failed"), timeout=30)
        assert late["status"] == "Completed" and json.loads(late["output"])["upgraded"] is None
        time.sleep(0.1)
