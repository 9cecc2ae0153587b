"""The Emitter's two queues: transactional output, and at-once output (cancel signals and commands)."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.kafka.emitter import Emitter
from pipeline.serde import Serde


def test_at_once_records_are_queued_apart_and_cleared_with_the_rest() -> None:
    out = Emitter(Serde(), Settings())
    out.send("runs", "r1", None, b"state")
    out.send("cancel-index", "k\x00sig\x00e1", None, b"signal", partition=2, at_once=True)
    assert [(t, k) for t, k, *_ in out._pending] == [("runs", "r1")]
    assert out._at_once == [("cancel-index", "k\x00sig\x00e1", b"signal", 2, None)]
    out.clear()  # the input failed: neither kind of output may leave
    assert out._pending == [] and out._at_once == []
