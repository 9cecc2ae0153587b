"""The shared consume-process-produce loop against a real broker: exactly-once, dead letters, SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from pipeline.config import Settings
from pipeline.kafka.emitter import Emitter
from pipeline.kafka.loop import ServiceLoop
from pipeline.kafka.passthrough import PassThrough
from pipeline.kafka.processor import Processor
from pipeline.testing.helpers import await_records, create_topic, unique_name

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, key=str(i).encode(), value=value)
    assert producer.flush(30) == 0


def _worker(bootstrap: str, source: str, sink: str, group: str, kill_after: int | None = None,
            at_once: bool = False) -> subprocess.Popen:
    args = [sys.executable, "-m", "tests.integration.loop_worker", bootstrap, source, sink, group, "w0"]
    args.append("-" if kill_after is None else str(kill_after))
    if at_once:
        args.append("at-once")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _two_hundred_inputs(kafka_bootstrap: str) -> tuple[str, str, str, list[bytes]]:
    """A source topic with 200 records, an empty sink, and a new group: (source, sink, group, values)."""
    source, sink = unique_name("src"), unique_name("sink")
    create_topic(kafka_bootstrap, source, partitions=1)
    create_topic(kafka_bootstrap, sink, partitions=1)
    values = [f"v{i}".encode() for i in range(200)]
    _produce(kafka_bootstrap, source, values)
    return source, sink, unique_name("g"), values


def test_sigkill_between_produce_and_commit_leaves_exactly_one_output_per_input(kafka_bootstrap: str) -> None:
    source, sink, group, values = _two_hundred_inputs(kafka_bootstrap)

    first = _worker(kafka_bootstrap, source, sink, group, kill_after=120)
    assert first.wait(90) == -signal.SIGKILL, first.stderr.read().decode()[-2000:] if first.stderr else ""
    # Some output of the killed transaction reached the broker but was never committed.
    uncommitted = await_records(kafka_bootstrap, sink, 1, timeout=10, isolation="read_uncommitted")
    assert uncommitted

    second = _worker(kafka_bootstrap, source, sink, group)
    try:
        records = await_records(kafka_bootstrap, sink, 200, timeout=60)
        with pytest.raises(AssertionError):  # and not one more: no duplicate from the killed transaction
            await_records(kafka_bootstrap, sink, 201, timeout=3)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    got = sorted(m.value() for m in records)
    assert got == sorted(values), f"{len(got)} outputs for 200 inputs"


def test_at_least_once_mode_copies_every_record_and_commits_its_offsets(kafka_bootstrap: str) -> None:
    """``PIPELINE_EXACTLY_ONCE=false``: no transactions; output is flushed and checked delivered before the
    offsets commit, so every input has its output and a stop leaves the group's offsets at the end."""
    source, sink, group, values = _two_hundred_inputs(kafka_bootstrap)
    loop = ServiceLoop(PassThrough(source, sink), Settings(bootstrap_servers=kafka_bootstrap, instance_id="l"),
                       group_id=group, exactly_once=False)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        got = [m.value() for m in await_records(kafka_bootstrap, sink, 200, timeout=60)]
    finally:
        loop.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert got == values
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        assert reader.committed([TopicPartition(source, 0)], timeout=10)[0].offset == 200
    finally:
        reader.close()


def test_poison_record_goes_to_dead_letter_and_neighbours_are_processed(kafka_bootstrap: str) -> None:
    prefix = unique_name("dlq") + "."
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, instance_id="t")
    source, sink, dlq = f"{prefix}in", f"{prefix}out", settings.topic("dead-letter")
    for topic in (source, sink, dlq):
        create_topic(kafka_bootstrap, topic, partitions=1)
    _produce(kafka_bootstrap, source, [b"a", b"b", b"poison!", b"c", b"d"])
    loop = ServiceLoop(PassThrough(source, sink), settings, group_id=unique_name("g"))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        out = await_records(kafka_bootstrap, sink, 4, timeout=30)
        dead = await_records(kafka_bootstrap, dlq, 1, timeout=30)
    finally:
        loop.stop()
        thread.join(30)
    assert [m.value() for m in out] == [b"a", b"b", b"c", b"d"]
    (bad,) = dead
    headers = {k: v.decode() for k, v in bad.headers()}
    assert bad.value() == b"poison!"
    assert headers["dlq.reason"] == "ValueError: poison record refused"
    assert headers["dlq.source.topic"] == source
    assert headers["dlq.source.partition"] == "0"
    assert headers["dlq.source.offset"] == "2"
    assert loop.dead_lettered == 1
    assert not thread.is_alive()


def test_sigterm_drains_commits_and_leaves(kafka_bootstrap: str) -> None:
    source, sink = unique_name("src"), unique_name("sink")
    create_topic(kafka_bootstrap, source, partitions=2)
    create_topic(kafka_bootstrap, sink, partitions=2)
    _produce(kafka_bootstrap, source, [f"x{i}".encode() for i in range(50)])
    group = unique_name("g")
    worker = _worker(kafka_bootstrap, source, sink, group)
    await_records(kafka_bootstrap, sink, 50, timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    # The offsets were committed: a new instance of the group finds nothing to redo.
    _produce(kafka_bootstrap, source, [b"after"])
    again = _worker(kafka_bootstrap, source, sink, group)
    try:
        records = await_records(kafka_bootstrap, sink, 51, timeout=60)
        with pytest.raises(AssertionError):  # nothing was processed twice
            await_records(kafka_bootstrap, sink, 52, timeout=3)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(30)
    assert len(records) == 51


class _Drop(Processor):
    """Consumes and produces nothing: its offsets ride on no transaction of their own."""

    name = "drop"

    def __init__(self, source: str) -> None:
        self.source = source

    def topics(self) -> list[str]:
        return [self.source]

    def process(self, msg: Message, out: Emitter) -> None:
        return None


def test_offsets_of_batches_without_output_are_committed_by_stop(kafka_bootstrap: str) -> None:
    source = unique_name("quiet")
    create_topic(kafka_bootstrap, source, partitions=1)
    _produce(kafka_bootstrap, source, [b"x"] * 30)
    group = unique_name("g")
    settings = Settings(bootstrap_servers=kafka_bootstrap, instance_id="q")
    loop = ServiceLoop(_Drop(source), settings, group_id=group)
    loop.commits.offset_commit_interval = 3600  # only the stop may commit them
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while loop.processed < 30:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        assert reader.committed([TopicPartition(source, 0)], timeout=10)[0].offset < 0  # nothing yet
        loop.stop()
        thread.join(30)
        assert reader.committed([TopicPartition(source, 0)], timeout=10)[0].offset == 30
    finally:
        reader.close()


class _HoldsItsTransaction(Processor):
    """Copies each record to ``fast`` (at once) and to ``slow`` (in the transaction), then holds the batch open
    at the record ``hold`` until ``release`` is set: the transaction stays uncommitted meanwhile."""

    name = "holds"

    def __init__(self, source: str, fast: str, slow: str) -> None:
        self.source, self.fast, self.slow = source, fast, slow
        self.release = threading.Event()

    def topics(self) -> list[str]:
        return [self.source]

    def process(self, msg: Message, out: Emitter) -> None:
        if msg.value() == b"hold":
            assert self.release.wait(60)
            return
        out.send(self.fast, msg.key(), None, msg.value(), at_once=True)
        out.send(self.slow, msg.key(), None, msg.value())


@contextlib.contextmanager
def _held_batch(bootstrap: str, kind: type[_HoldsItsTransaction]) -> Iterator[tuple[_HoldsItsTransaction, str, str]]:
    """A loop running ``kind`` over [b"a", b"hold"]: yields (processor, fast topic, slow topic) once it runs;
    releases the held batch and stops the loop on the way out."""
    source, fast, slow = unique_name("src"), unique_name("fast"), unique_name("slow")
    for topic in (source, fast, slow):
        create_topic(bootstrap, topic, partitions=1)
    _produce(bootstrap, source, [b"a", b"hold"])
    processor = kind(source, fast, slow)
    loop = ServiceLoop(processor, Settings(bootstrap_servers=bootstrap, instance_id="h"), group_id=unique_name("g"))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        yield processor, fast, slow
    finally:
        processor.release.set()
        loop.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_at_once_output_is_readable_before_its_batch_commits(kafka_bootstrap: str) -> None:
    """What cancel signals and commands rely on: a read_committed reader sees an at-once record while the
    batch that produced it is still open, and the transactional output only after the commit."""
    with _held_batch(kafka_bootstrap, _HoldsItsTransaction) as (processor, fast, slow):
        assert [m.value() for m in await_records(kafka_bootstrap, fast, 1, timeout=30)] == [b"a"]
        with pytest.raises(AssertionError):  # the batch is held open: its transaction is not committed
            await_records(kafka_bootstrap, slow, 1, timeout=2)
        assert await_records(kafka_bootstrap, slow, 1, timeout=5, isolation="read_uncommitted")
        processor.release.set()
        assert [m.value() for m in await_records(kafka_bootstrap, slow, 1, timeout=30)] == [b"a"]


def test_sigkill_never_loses_an_at_once_record(kafka_bootstrap: str) -> None:
    """At-once output skips the transaction but is acknowledged before its input's offset commits: a SIGKILL
    with some sent and the batch uncommitted loses none of them; the replay may send some twice."""
    source, sink, group, values = _two_hundred_inputs(kafka_bootstrap)

    first = _worker(kafka_bootstrap, source, sink, group, kill_after=120, at_once=True)
    assert first.wait(90) == -signal.SIGKILL, first.stderr.read().decode()[-2000:] if first.stderr else ""
    second = _worker(kafka_bootstrap, source, sink, group, at_once=True)
    try:
        await_records(kafka_bootstrap, sink, 200, timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)  # it drains, commits and leaves
        assert second.wait(30) == 0
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        assert reader.committed([TopicPartition(source, 0)], timeout=10)[0].offset == 200
        written = reader.get_watermark_offsets(TopicPartition(sink, 0), timeout=10)[1]  # no markers: no transaction
    finally:
        reader.close()
    got = [m.value() for m in await_records(kafka_bootstrap, sink, written, timeout=30)]
    assert set(got) == set(values), f"lost: {sorted(set(values) - set(got))[:5]}"
    assert len(got) > 200, "the killed batch's at-once records were sent before the kill, and again by the replay"


class _DefersItsOutput(_HoldsItsTransaction):
    """Copies each record to ``slow`` in the transaction, produced only at the commit (``defer_output``), then
    holds the batch open at ``hold`` as its parent does."""

    defer_output = True


def test_deferred_output_does_not_hide_other_producers_records_while_its_batch_is_open(kafka_bootstrap: str) -> None:
    """What the matcher's ``defer_output`` is for: a transaction's first record in a partition holds back its
    last stable offset, so a read_committed reader sees no record past it, another producer's neither (a cancel
    command behind a burst's starts). Output produced at the commit hides nothing while the batch works."""
    with _held_batch(kafka_bootstrap, _DefersItsOutput) as (processor, fast, shared):
        await_records(kafka_bootstrap, fast, 1, timeout=30)  # "a" is processed; the batch is held open at "hold"
        _produce(kafka_bootstrap, shared, [b"other"])  # another producer, the same partition
        assert [m.value() for m in await_records(kafka_bootstrap, shared, 1, timeout=5)] == [b"other"]
        processor.release.set()
        got = [m.value() for m in await_records(kafka_bootstrap, shared, 2, timeout=30)]
        assert got == [b"other", b"a"]  # the deferred record, at the commit
