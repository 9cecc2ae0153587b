"""examples/ported_inngest.py, inngest-py code with only its import changed, runs end to end on a real broker:
parallel steps, an invoked child, a sleep in ms, a wait resolved by an event, an event sent, a cancel rule."""

from __future__ import annotations

import json

import pytest

from examples.ported_inngest import inngest_client
from pipeline.sdk.app import load_app
from pipeline.testing.stack import Stack

pytestmark = pytest.mark.integration


def test_the_ported_app_places_an_order_and_honours_a_cancel(kafka_bootstrap: str) -> None:
    assert [f.id for f in load_app("examples.ported_inngest:inngest_client").functions] == \
        [f.id for f in inngest_client.functions]  # what `pipeline dev --app ...` loads
    with Stack(inngest_client, kafka_bootstrap) as stack:
        stack.send("orders/placed", {"order_id": "o-1", "amount": 30}, id="O1")
        stack.send("orders/placed", {"order_id": "o-2", "amount": 10}, id="O2")
        stack.wait_run(lambda r: r["event_id"] == "O1" and r["pending_step"] == "approval", timeout=60)
        stack.wait_run(lambda r: r["event_id"] == "O2" and r["pending_step"] == "approval", timeout=60)
        stack.send("orders/approved", {"order_id": "o-1", "by": "ada"}, id="AP1")
        stack.send("orders/cancelled", {"order_id": "o-2"}, id="CX2")
        done = stack.wait_run(lambda r: r["event_id"] == "O1" and r["status"] == "Completed", timeout=60)
        cancelled = stack.wait_run(lambda r: r["event_id"] == "O2" and r["status"] == "Cancelled", timeout=60)
    assert json.loads(done["output"]) == {"status": "shipped", "charged": 35, "approved_by": "ada"}
    assert [s["id"] for s in done["steps"]] == ["check-stock", "quote", "charge", "cool-off", "approval", "shipped"]
    assert cancelled["cancel_reason"] == "cancel_on"
