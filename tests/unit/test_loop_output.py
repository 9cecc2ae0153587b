"""When the loop's output leaves, relative to processing and to the offsets: deferred output (``defer_output``)
goes at the commit, before the offsets; a loop that fails commits nothing on its way out. Kafka's clients are
replaced by recorders, so the order of every call is visible without a broker."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.kafka import loop as loop_module
from pipeline.kafka.loop import ServiceLoop
from pipeline.kafka.processor import Processor

from .fakes import FakeMessage

SOURCE = "src"


class _Consumer:
    """Hands out the test's records once, in batches; the position follows what was handed out."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.msgs: list[FakeMessage] = []
        self.handed = 0

    def consume(self, n: int, timeout: float = 0) -> list[FakeMessage]:
        out, self.msgs = self.msgs[:n], self.msgs[n:]
        self.handed += len(out)
        return out

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.handed) for tp in tps]

    def consumer_group_metadata(self) -> None:
        return None

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _Producer:
    """Writes every call into the shared ``log``; ``fail_on``: a value whose produce raises a non-abortable error."""

    log: ClassVar[list[tuple[Any, ...]]] = []
    fail_on: ClassVar[bytes | None] = None

    def __init__(self, conf: dict[str, Any]) -> None:
        self.kind = "tx" if "transactional.id" in conf else "plain"

    def produce(self, topic: str, value: bytes | None = None, **kwargs: Any) -> None:
        if value is not None and value == _Producer.fail_on:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))
        _Producer.log.append(("produce", topic, value))

    def send_offsets_to_transaction(self, tps: list[TopicPartition], metadata: Any, timeout: float) -> None:
        _Producer.log.append(("offsets", [tp.offset for tp in tps]))

    def begin_transaction(self) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        _Producer.log.append(("commit",))

    def abort_transaction(self, timeout: float) -> None:
        _Producer.log.append(("abort",))

    def init_transactions(self, timeout: float) -> None:
        pass

    def flush(self, timeout: float = 0) -> int:
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


class _Copier(Processor):
    """Copies each record to ``now`` and ``late``; notes each record in the log; stops the loop after ``stop_after``."""

    name = "copier"

    def __init__(self, stop_after: int, defer_output: bool | frozenset[str] = False) -> None:
        self.stop_after = stop_after
        self.defer_output = defer_output
        self.seen = 0
        self.loop: ServiceLoop | None = None

    def bind(self, loop: ServiceLoop) -> None:
        self.loop = loop

    def topics(self) -> list[str]:
        return [SOURCE]

    def process(self, msg: FakeMessage, out: Any) -> None:
        _Producer.log.append(("process", msg.offset()))
        out.send("now", None, None, b"now%d" % msg.offset())
        out.send("late", None, None, b"late%d" % msg.offset())
        self.seen += 1
        if self.seen >= self.stop_after and self.loop is not None:
            self.loop.stop()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    monkeypatch.setattr(loop_module, "Consumer", _Consumer)
    monkeypatch.setattr(loop_module, "Producer", _Producer)
    _Producer.log, _Producer.fail_on = [], None
    return _Producer.log


def _run(processor: _Copier, n: int) -> ServiceLoop:
    loop = ServiceLoop(processor, Settings(bootstrap_servers="unused:1", instance_id="t", batch_size=n),
                       exactly_once=True)
    loop.consumer.msgs = [FakeMessage(b"v", topic_=SOURCE, offset_=i) for i in range(n)]
    loop.rebalance.assignment = [TopicPartition(SOURCE, 0)]
    loop.run()
    return loop


def test_without_deferral_output_leaves_as_each_record_is_processed(recorded: list[tuple[Any, ...]]) -> None:
    _run(_Copier(stop_after=2), 2)
    assert recorded == [("process", 0), ("produce", "now", b"now0"), ("produce", "late", b"late0"),
                        ("process", 1), ("produce", "now", b"now1"), ("produce", "late", b"late1"),
                        ("offsets", [2]), ("commit",)]


def test_deferred_output_leaves_at_the_commit_before_the_offsets(recorded: list[tuple[Any, ...]]) -> None:
    _run(_Copier(stop_after=2, defer_output=True), 2)
    assert recorded == [("process", 0), ("process", 1),
                        ("produce", "now", b"now0"), ("produce", "late", b"late0"),
                        ("produce", "now", b"now1"), ("produce", "late", b"late1"),
                        ("offsets", [2]), ("commit",)]


def test_a_set_of_topics_defers_only_those(recorded: list[tuple[Any, ...]]) -> None:
    """The run owner's way: its cancel-index records wait for the commit, its invocations do not."""
    _run(_Copier(stop_after=2, defer_output=frozenset({"late"})), 2)
    assert recorded == [("process", 0), ("produce", "now", b"now0"),
                        ("process", 1), ("produce", "now", b"now1"),
                        ("produce", "late", b"late0"), ("produce", "late", b"late1"),
                        ("offsets", [2]), ("commit",)]


@pytest.mark.parametrize("defer", [False, True])
def test_a_loop_that_fails_aborts_and_commits_no_offset_on_its_way_out(recorded: list[tuple[Any, ...]],
                                                                       defer: bool) -> None:
    """A produce that fails with an error the loop cannot abort and replay ends the loop. Its last batch must not
    commit: part of its output was dropped, and its offsets (the consumer's position past the whole batch) would
    skip records never processed."""
    _Producer.fail_on = b"late1"
    with pytest.raises(KafkaException):
        _run(_Copier(stop_after=4, defer_output=defer), 4)
    assert not [call for call in recorded if call[0] in ("offsets", "commit")], recorded
    assert recorded[-1] == ("abort",)


def test_at_least_once_commits_no_offset_past_a_record_whose_delivery_failed(recorded: list[tuple[Any, ...]]) -> None:
    """Without transactions the loop flushes, then commits offsets: a delivery report with an error must stop that
    commit (an abortable error: the batch is processed again), or the record is lost with its input committed."""
    commits: list[Any] = []
    loop = ServiceLoop(_Copier(stop_after=1), Settings(bootstrap_servers="unused:1", instance_id="t"),
                       exactly_once=False)
    loop.consumer.commit = lambda offsets, asynchronous: commits.append(offsets)  # type: ignore[attr-defined]
    loop.commits.in_tx, loop.commits.uncommitted[(SOURCE, 0)] = True, 1
    loop.commits.delivered(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)  # the producer's delivery report
    with pytest.raises(KafkaException) as caught:
        loop.commits.commit(force=True, advance=False)
    assert caught.value.args[0].txn_requires_abort() and commits == []
    loop.commits.commit(force=True, advance=False)  # delivered this time
    assert [tp.offset for tp in commits[0]] == [1]



class _SlowCopier(_Copier):
    """Each record takes ``seconds`` (a burst's records on busy cores); records marked urgent are cancels."""

    def __init__(self, stop_after: int, seconds: float) -> None:
        super().__init__(stop_after)
        self.seconds = seconds

    def urgent(self, msg: FakeMessage) -> bool:
        return msg.urgent

    def process(self, msg: FakeMessage, out: Any) -> None:
        time.sleep(0 if msg.urgent else self.seconds)
        super().process(msg, out)


class _CancelMidBatch(_Consumer):
    """Hands out the batch; the first look after that finds a cancel, produced meanwhile."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.cancel: FakeMessage | None = None

    def consume(self, n: int, timeout: float = 0) -> list[FakeMessage]:
        out = super().consume(n, timeout)
        if not out and self.handed and self.cancel is not None:
            out, self.cancel = [self.cancel], None
        return out


def test_a_cancel_that_arrives_mid_batch_is_applied_and_committed_within_milliseconds(
        recorded: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of 40 records at 2 ms each (80 ms of work); a cancel arrives once the batch is under way. The loop
    looks for new records every URGENT_LOOK_SECONDS of work (it looked every 64 records, which this batch never
    reaches), and commits the cancel's output at once, because the work still ahead of it is longer than
    EARLY_COMMIT_SECONDS (it needed 128 records ahead): its commit comes after a few records, not the batch."""
    monkeypatch.setattr(loop_module, "Consumer", _CancelMidBatch)
    n, cancel_offset = 40, 1000
    loop = ServiceLoop(_SlowCopier(stop_after=n + 1, seconds=0.002),
                       Settings(bootstrap_servers="unused:1", instance_id="t", batch_size=n), exactly_once=True)
    loop.consumer.msgs = [FakeMessage(b"v", topic_=SOURCE, offset_=i, key_=b"r%d" % i) for i in range(n)]
    loop.consumer.cancel = FakeMessage(b"v", topic_=SOURCE, partition_=1, offset_=cancel_offset, key_=b"other",
                                       urgent=True)
    loop.rebalance.assignment = [TopicPartition(SOURCE, 0), TopicPartition(SOURCE, 1)]
    loop.run()
    processed = [call[1] for call in recorded if call[0] == "process"]
    assert processed.index(cancel_offset) <= 6, f"the cancel waited behind records: {processed}"
    first_commit = recorded.index(("commit",))
    assert first_commit < recorded.index(("process", 10)), "the cancel's output waited for the batch's commit"
    assert not [call for call in recorded[:first_commit] if call[0] == "offsets"]  # output only, as designed
