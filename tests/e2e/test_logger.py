"""``ctx.logger`` on a real broker says each line once, though the handler runs again from the top for every
step (sync and async)."""

from __future__ import annotations

import logging

import pytest

from pipeline.testing.stack import Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["test/chatty", "test/chatty.async"])
def test_each_line_is_logged_once_across_replays(shared_stack: Stack, caplog: pytest.LogCaptureFixture,
                                                 name: str) -> None:
    event_id = f"log-{name.rsplit('.', 1)[-1]}"
    with caplog.at_level(logging.INFO, logger="pipeline.function"):
        shared_stack.send(name, {}, id=event_id)
        done = shared_stack.wait_run(lambda r: r["event_id"] == event_id and r["status"] == "Completed")
    assert done["output"] == "3"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"chatty {event_id}")]
    assert lines == [f"chatty {event_id} before step {n}" for n in range(3)] + [f"chatty {event_id} done"]
