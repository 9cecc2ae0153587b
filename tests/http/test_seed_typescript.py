"""The seed's two TypeScript functions, verbatim, on inngest 3.x from npm (and in 4.x's form on the latest
4.x), served by Node and run here.

The import function's body is empty: its first call returns at once, so the cancel that follows its trigger
back to back must win through the watermark gate (a run with cancel rules does not end before the cancel path
has passed the time its answer arrived). Every run must be cancelled: PIPELINE_HTTP_SEED_RUNS (default 100,
as the issue asks) of them. Then each ``function.cancelled`` carries the seed's payload and the
cleanup function, in Node, logs ``Import was cancelled: <id>``.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from .harness import NODE4_DIR, NODE_DIR, HttpStack, node_app

pytestmark = pytest.mark.integration
RUNS = int(os.environ.get("PIPELINE_HTTP_SEED_RUNS", "100"))
IMPORT = "newsletter-app-import-all-contacts"
CLEANUP = "newsletter-app-cleanup-cancelled-import"


@pytest.mark.parametrize("node_dir", [NODE_DIR, NODE4_DIR], ids=["inngest-3", "inngest-4"])
def test_seed_functions_every_cancel_in_the_triggers_send_wins(kafka_bootstrap: str, tmp_path: Path,
                                                                node_dir: Path) -> None:
    """inngest 3.x runs the seed verbatim; inngest 4.x the same functions in its form (triggers in the options)."""
    with HttpStack(kafka_bootstrap) as http, node_app(http.api_port, "seed", tmp_path, node_dir) as app:
        answer = http.sync(app, {IMPORT, CLEANUP})
        assert answer["modified"] is True
        again = http.sync(app, {IMPORT, CLEANUP})  # a re-sync changes nothing
        assert again["modified"] is False
        ids = [str(uuid.uuid4()) for _ in range(RUNS)]
        for import_id in ids:  # the cancel right after its trigger, in one send (as `inngest.send([a, b])`)
            http.send({"name": "contacts/import.requested", "data": {"importId": import_id}},
                      {"name": "contacts/import.cancelled", "data": {"importId": import_id}})
        stack = http.stack
        deadline = time.monotonic() + 90
        while len(_ended(stack, IMPORT)) < RUNS and time.monotonic() < deadline:
            time.sleep(0.2)
        ended = _ended(stack, IMPORT)
        statuses = [r["status"] for r in ended.values()]
        assert len(ended) == RUNS and set(statuses) == {"Cancelled"}, \
            {s: statuses.count(s) for s in set(statuses)}
        # the app answered first in most runs (its body is empty): the gate, not luck, made the cancel win
        invoked = sum(int(r["seq"]) >= 1 for r in ended.values())  # type: ignore[call-overload]
        assert invoked > 0, "no run reached the app before its cancel: the race was not run"
        events = stack.wait_system_event("inngest/function.cancelled", count=RUNS, timeout=30)
        by_import = {e["data"]["event"]["data"]["importId"]: e for e in events}
        assert set(by_import) == set(ids)
        one = by_import[ids[0]]
        assert one["data"]["function_id"] == IMPORT
        assert one["data"]["error"] == {"error": "function cancelled", "message": "function cancelled",
                                        "name": "Error"}
        assert one["data"]["events"] == [one["data"]["event"]]
        assert set(one["data"]["event"]) == {"data", "id", "name", "ts", "user"}
        assert one["id"] == one["data"]["run_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [r for r in _ended(stack, CLEANUP).values() if r["status"] == "Completed"]
            if len(done) >= RUNS:
                break
            time.sleep(0.2)
        assert len(done) == RUNS
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(f"Import was cancelled: {i}" in app.output() for i in ids):
            time.sleep(0.2)
        output = app.output()
        assert all(f"Import was cancelled: {i}" in output for i in ids), output[-3000:]


def _ended(stack: object, function_id: str) -> dict[str, dict[str, object]]:
    """The latest state of each ended run of ``function_id``, by run id."""
    latest: dict[str, dict[str, object]] = {}
    for r in stack.runs.records:  # type: ignore[attr-defined]
        if r is not None and r["function_id"] == function_id:
            latest[r["run_id"]] = r
    return {k: v for k, v in latest.items() if v["status"] in ("Completed", "Failed", "Cancelled")}
