"""The Emitter's two queues (transactional and at-once output), and the rule that no offset commits past an
at-once record the broker has not acknowledged."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from pipeline.config import Settings
from pipeline.kafka.committing import Committing
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


class _Producer:
    """What the loop's at-once producer answers to flush(): how many records are still unacknowledged."""

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining

    def flush(self, timeout: float) -> int:
        return self.remaining


def _committing(remaining: int) -> Committing:
    c = Committing(exactly_once=True, consumer=None, emitter=Emitter(Serde(), Settings()), defer_output=False,
                   offset_commit_interval=0.02, assignment=list, positions={})
    c.at_once_producer = _Producer(remaining)
    c.at_once_sent, c.delivery_failed = True, None
    return c


def test_offsets_never_commit_past_an_unacknowledged_at_once_record() -> None:
    """The loop aborts and replays the batch (an abortable error) rather than commit offsets past a record
    not on the broker: not acknowledged in time, or lost (a delivery report with an error)."""
    late = _committing(remaining=2)
    with pytest.raises(KafkaException) as caught:
        late.flush_at_once()
    assert caught.value.args[0].txn_requires_abort() and late.at_once_sent
    lost = _committing(remaining=0)
    lost.delivered(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
    with pytest.raises(KafkaException, match="lost"):
        lost.flush_at_once()
    fine = _committing(remaining=0)
    fine.flush_at_once()
    assert not fine.at_once_sent
