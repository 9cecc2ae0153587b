"""The proof that every matcher applied a sync or a learned wait name (pipeline/apps/applied.py), against a real
broker and a matcher process held with SIGSTOP well past the old settle time (500 ms): ``POST /fn/register``
answers only once the held matcher has applied the sync, and a wait learned at run time (an inngest-py app's
``wait_for_event``) is reported only once it has applied the name, so an event sent right after the wait is
reported is never missed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from pipeline.apps.applied import AppliedCheck

from .harness import HttpStack, python_app
from .test_faults import ROOT, wait_for
from .test_register import body

pytestmark = pytest.mark.integration
HOLD_S = 2.5  # five times the old settle time; under the group's 6 s session, so the matcher stays a member


def hold(proc: subprocess.Popen[bytes], seconds: float) -> tuple[float, threading.Thread]:
    """SIGSTOP the process now and SIGCONT it ``seconds`` later (in a thread); returns when it resumes."""
    proc.send_signal(signal.SIGSTOP)
    resume_at = time.monotonic() + seconds

    def cont() -> None:
        time.sleep(max(0.0, resume_at - time.monotonic()))
        proc.send_signal(signal.SIGCONT)

    thread = threading.Thread(target=cont, daemon=True)
    thread.start()
    return resume_at, thread


def test_a_held_matcher_holds_the_sync_and_the_learned_wait(kafka_bootstrap: str, tmp_path: Path) -> None:
    with HttpStack(kafka_bootstrap, services=("run-owner", "canceller", "worker")) as http:
        stack = http.stack
        env = stack.env(PYTHONPATH=str(ROOT), PIPELINE_INSTANCE_ID="m1")
        matcher = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "matcher", "--no-app"], cwd=ROOT,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check = AppliedCheck(stack.settings, "test")
        try:
            matchers = check.groups[0]
            wait_for(lambda: check.members(matchers) == ["m1"] and check.applied(matchers, "m1") >= 0, 60,
                     "the matcher to join")
            wait_for(lambda: check.lagging(check.end_offset()) == {}, 30, "every member to publish its position")
            assert check.members(check.groups[1]) == [stack.settings.instance_id]  # the run owner is checked too

            # 1. a sync answers only once the held matcher has applied it, and its function then starts runs
            resume_at, cont = hold(matcher, HOLD_S)
            answer = httpx.post(f"{http.api}/fn/register", json=body("a"), timeout=60)
            answered_at = time.monotonic()
            cont.join()
            assert answer.status_code == 200 and answer.json()["modified"] is True, answer.text
            assert answered_at >= resume_at, f"answered {resume_at - answered_at:.2f} s before the matcher resumed"
            assert check.lagging(check.end_offset()) == {}
            http.send({"name": "reg/a", "data": {"k": "x"}})
            stack.wait_run(lambda r: r["function_id"] == "reg-app-a", timeout=30)

            # 2. a wait on a new name, learned while the matcher is held, is reported only after it applied the
            # name; the event sent the moment the wait is reported is matched
            with python_app(http.api_port, "py_app", tmp_path) as app:
                http.sync(app, {"py-app-learner"})
                k = str(uuid.uuid4())
                http.send({"name": "py/learn", "data": {"k": k, "nap_s": 0.5}})

                def mine(r: dict[str, object]) -> bool:
                    return r["function_id"] == "py-app-learner" and json.loads(str(r["event"]))["data"]["k"] == k

                stack.wait_run(lambda r: mine(r) and r["status"] == "Sleeping", timeout=30)
                resume_at, cont = hold(matcher, HOLD_S)  # the nap ends and the wait is learned meanwhile
                stack.wait_run(lambda r: mine(r) and r["status"] == "Waiting", timeout=30)
                reported_at = time.monotonic()
                http.send({"name": "py/learned", "data": {"k": k, "note": "right after"}})
                cont.join()
                assert reported_at >= resume_at, \
                    f"the wait was reported {resume_at - reported_at:.2f} s before the matcher resumed"
                run = stack.wait_run(lambda r: mine(r) and r["status"] in ("Completed", "Failed"), timeout=60)
                assert run["status"] == "Completed", (run["error"], app.output()[-2000:])
                assert json.loads(run["output"]) == {"got": {"k": k, "note": "right after"}}
        finally:
            matcher.send_signal(signal.SIGCONT)
            matcher.terminate()
            try:
                matcher.wait(20)
            except subprocess.TimeoutExpired:
                matcher.kill()
