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

    def produce(self, topic: str, value: bytes | None = None, key: Any = None, partition: int = -1,
                **kwargs: Any) -> None:  # confluent-kafka's positional order
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


# -- transactions that span batches (PIPELINE_COMMIT_INTERVAL_MS) ----------------------------------------------


class _Clock:
    """The commit window's clock (``committing.time.monotonic``), moved by the test's processor, not by the machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Record(FakeMessage):
    def headers(self) -> None:  # a dead letter copies them
        return None


class _Dry(_Consumer):
    """Hands out the records in full batches, then none (the loop has caught up); once they are all committed, stops
    the loop. Supports the rewind after an abort (``committed``, ``seek``)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.all: list[FakeMessage] = []
        self.loop: ServiceLoop | None = None
        self.seeks: list[int] = []

    def consume(self, n: int, timeout: float = 0) -> list[FakeMessage]:
        out = super().consume(n, timeout)
        if not out and self.loop is not None and timeout > 0 \
                and self.committed([TopicPartition(SOURCE, 0)])[0].offset == len(self.all):
            self.loop.stop()
        return out

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(SOURCE, 0)]

    def committed(self, tps: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        sent: int | None = None
        done = -1001  # OFFSET_INVALID: nothing committed
        for call in _Producer.log:  # offsets count once their transaction commits
            if call[0] == "offsets":
                sent = call[1][0]
            elif call[0] == "abort":
                sent = None
            elif call[0] == "commit" and sent is not None:
                done, sent = sent, None
        return [TopicPartition(tp.topic, tp.partition, done) for tp in tps]

    def seek(self, tp: TopicPartition) -> None:
        start = max(tp.offset, 0)
        self.seeks.append(tp.offset)
        self.msgs = [m for m in self.all if m.offset() >= start]
        self.handed = start


class _Windowed(_Copier):
    """A copier whose records each take ``tick`` seconds of the commit window's clock; ``fail_at``: offsets it
    refuses (dead-lettered); ``ask_at``: offsets after which it asks for a commit. Notes discards and rebuilds."""

    def __init__(self, clock: _Clock, tick: float = 0.0, fail_at: tuple[int, ...] = (),
                 ask_at: tuple[int, ...] = ()) -> None:
        super().__init__(stop_after=10**9)
        self.clock, self.tick, self.fail_at, self.ask_at = clock, tick, fail_at, ask_at

    def process(self, msg: FakeMessage, out: Any) -> None:
        self.clock.now += self.tick
        if msg.offset() in self.fail_at:
            _Producer.log.append(("process", msg.offset()))
            out.send("now", None, None, b"half%d" % msg.offset())  # dropped with the record
            raise ValueError("refused")
        super().process(msg, out)
        if msg.offset() in self.ask_at and self.loop is not None:
            self.loop.request_commit()

    def discard(self) -> None:
        _Producer.log.append(("discard",))

    def revoked(self, partitions: list[TopicPartition]) -> None:
        _Producer.log.append(("revoked",))

    def assigned(self, partitions: list[TopicPartition]) -> None:
        _Producer.log.append(("assigned",))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, recorded: list[tuple[Any, ...]]) -> _Clock:
    from pipeline.kafka import committing
    monkeypatch.setattr(loop_module, "Consumer", _Dry)
    fake = _Clock()
    monkeypatch.setattr(committing.time, "monotonic", fake)
    return fake


def _run_windowed(processor: _Windowed, n: int, *, batch: int = 2, interval_ms: int = 3_600_000) -> ServiceLoop:
    loop = ServiceLoop(processor, Settings(bootstrap_servers="unused:1", instance_id="t", batch_size=batch,
                                           commit_interval_ms=interval_ms), exactly_once=True)
    consumer = loop.consumer
    consumer.all = [_Record(b"v", topic_=SOURCE, offset_=i) for i in range(n)]
    consumer.msgs, consumer.loop = list(consumer.all), loop
    loop.rebalance.assignment = [TopicPartition(SOURCE, 0)]
    loop.run()
    return loop


def _commits(log: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [call for call in log if call[0] in ("offsets", "commit", "abort")]


def test_a_transaction_spans_full_batches_and_commits_when_the_input_runs_dry(
        recorded: list[tuple[Any, ...]], clock: _Clock) -> None:
    """Three full batches, one transaction: the batch that is not full (here empty: the loop caught up) commits it,
    with the offsets of all three, after every record's output."""
    _run_windowed(_Windowed(clock), 6)
    assert [call[1] for call in recorded if call[0] == "process"] == list(range(6))
    assert _commits(recorded) == [("offsets", [6]), ("commit",)]
    assert recorded[-2:] == [("offsets", [6]), ("commit",)]


def test_commit_interval_zero_commits_every_batch(recorded: list[tuple[Any, ...]], clock: _Clock) -> None:
    """PIPELINE_COMMIT_INTERVAL_MS=0: one transaction per batch, as before."""
    _run_windowed(_Windowed(clock), 6, interval_ms=0)
    assert _commits(recorded) == [("offsets", [2]), ("commit",), ("offsets", [4]), ("commit",),
                                  ("offsets", [6]), ("commit",)]


def test_the_open_transaction_commits_once_the_interval_has_passed(
        recorded: list[tuple[Any, ...]], clock: _Clock) -> None:
    """Records take 10 ms each, batches of 2, interval 30 ms: the window that began with batch 1 is 40 ms old
    at the end of batch 2, which commits; batch 3 opens a new window, committed when the input runs dry."""
    _run_windowed(_Windowed(clock, tick=0.010), 6, interval_ms=30)
    assert _commits(recorded) == [("offsets", [4]), ("commit",), ("offsets", [6]), ("commit",)]
    assert recorded.index(("offsets", [4])) > recorded.index(("produce", "late", b"late3"))
    assert recorded.index(("offsets", [4])) < recorded.index(("process", 4))


def test_a_processor_that_asks_gets_its_commit_at_the_end_of_the_batch(
        recorded: list[tuple[Any, ...]], clock: _Clock) -> None:
    _run_windowed(_Windowed(clock, ask_at=(2,)), 8)
    assert _commits(recorded) == [("offsets", [4]), ("commit",), ("offsets", [8]), ("commit",)]
    assert recorded.index(("commit",)) < recorded.index(("process", 4))


def test_a_dead_lettered_record_drops_only_its_own_output_from_the_open_transaction(
        recorded: list[tuple[Any, ...]], clock: _Clock) -> None:
    """Record 3 (in the second of three batches of one transaction) fails: it goes to dead-letter, its half-made
    output is dropped and discard is called; the transaction is not aborted and the other records' output
    commits with every offset."""
    loop = _run_windowed(_Windowed(clock, fail_at=(3,)), 6)
    assert ("abort",) not in recorded
    assert _commits(recorded) == [("offsets", [6]), ("commit",)]
    produced = [(call[1], call[2]) for call in recorded if call[0] == "produce"]
    assert ("now", b"half3") not in produced
    assert [v for t, v in produced if t == "late"] == [b"late%d" % i for i in (0, 1, 2, 4, 5)]
    assert [t for t, _ in produced].count("dead-letter") == 1
    assert recorded.count(("discard",)) == 1 and loop.dead_lettered == 1


class _AbortOnce(_Producer):
    """The first commit fails with an error that asks for an abort (a fence, a coordinator that moved)."""

    failed: ClassVar[bool] = False

    def commit_transaction(self, timeout: float) -> None:
        if not _AbortOnce.failed:
            _AbortOnce.failed = True
            raise KafkaException(KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True))
        super().commit_transaction(timeout)


def test_an_abort_rewinds_every_batch_of_the_open_transaction(
        recorded: list[tuple[Any, ...]], clock: _Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit of a transaction that spans three batches aborts: the loop rewinds to the committed offsets
    (none: the beginning), not one batch back, and the processor rebuilds (revoked, assigned) before the three
    batches are processed again and committed once."""
    monkeypatch.setattr(loop_module, "Producer", _AbortOnce)
    _AbortOnce.failed = False
    loop = _run_windowed(_Windowed(clock), 6)
    aborted = recorded.index(("abort",))
    assert [call[1] for call in recorded[:aborted] if call[0] == "process"] == list(range(6))
    assert recorded[aborted + 1:aborted + 3] == [("revoked",), ("assigned",)]
    assert loop.consumer.seeks == [-2]  # OFFSET_BEGINNING: nothing was committed
    assert [call[1] for call in recorded[aborted:] if call[0] == "process"] == list(range(6))
    assert _commits(recorded) == [("offsets", [6]), ("abort",), ("offsets", [6]), ("commit",)]
