"""State stores (pipeline.kafka.store) under the real loop and broker: a SIGKILL mid-transaction leaves the store
with committed state only, and a restart restores only the changelog's tail (``pipeline_restore_records``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from pipeline.config import Settings
from pipeline.kafka import metrics
from pipeline.kafka.loop import ServiceLoop, run_in_thread
from pipeline.kafka.store import Store, StoreMemory
from pipeline.testing.helpers import create_topic, unique_name
from tests.integration.store_worker import Counter, Counts

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
KEYS = [f"k{i}".encode() for i in range(10)]


def _produce(bootstrap: str, topic: str, n: int, first: int = 0) -> dict[bytes, int]:
    """``n`` records over KEYS, keyed by partition explicitly; returns the count of each key."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    counts: dict[bytes, int] = {}
    for i in range(first, first + n):
        key = KEYS[i % len(KEYS)]
        producer.produce(topic, key=key, value=b"x", partition=KEYS.index(key) % PARTITIONS)
        counts[key] = counts.get(key, 0) + 1
    assert producer.flush(30) == 0
    return counts


def _changelog(bootstrap: str, topic: str, *, upto: dict[int, int] | None = None,
               isolation: str = "read_committed") -> tuple[dict[bytes, int], int]:
    """The last count per key on the changelog (read up to ``upto`` per partition, else to the end) and the
    number of records read."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"), "enable.auto.commit": False,
                         "isolation.level": isolation, "enable.partition.eof": True})
    last: dict[bytes, int] = {}
    read = 0
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
        if upto is not None:
            ends = {p: min(ends[p], upto.get(p, 0)) for p in ends}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                p, offset, key, value, err = msg.partition(), msg.offset(), msg.key(), msg.value(), msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                    continue
                assert p is not None and offset is not None and key is not None and value is not None
                if p not in pending or offset >= ends[p]:
                    pending.discard(p)
                    continue
                last[key] = int(value)
                read += 1
                if offset + 1 >= ends[p]:
                    pending.discard(p)
        assert not pending, "changelog not read to its end"
    finally:
        consumer.close()
    return last, read


def _store_state(state: Path, group: str, changelog: str) -> tuple[dict[bytes, int], dict[int, int]]:
    """What the stores of ``changelog`` hold on disk (every partition) and their offsets."""
    counts: dict[bytes, int] = {}
    offsets: dict[int, int] = {}
    memory = StoreMemory()
    for p in range(PARTITIONS):
        store = Store(state / group / "w0" / f"{changelog}-{p}", memory)
        try:
            counts.update(Counts(store).all())
            offsets[p] = store.offset or 0
        finally:
            store.close()
    return counts, offsets


def _topics(bootstrap: str) -> tuple[str, str, str]:
    source, changelog = unique_name("src"), unique_name("counts")
    create_topic(bootstrap, source, partitions=PARTITIONS)
    create_topic(bootstrap, changelog, partitions=PARTITIONS, config={"cleanup.policy": "compact"})
    return source, changelog, unique_name("g")


def _run_until(bootstrap: str, source: str, changelog: str, group: str, state: Path,
               expected: dict[bytes, int]) -> int:
    """Run the counter in this process until the changelog's committed counts are ``expected``; stop it; return
    the records its restore read."""
    settings = Settings(bootstrap_servers=bootstrap, instance_id="w0", batch_size=50, commit_interval_ms=0,
                        state_dir=str(state))
    loop = ServiceLoop(Counter(source, changelog), settings, group_id=group)
    thread = run_in_thread(loop)
    try:
        deadline = time.monotonic() + 60
        while True:
            last, _ = _changelog(bootstrap, changelog)
            if last == expected:
                break
            assert time.monotonic() < deadline, f"counts {last} never reached {expected}"
            time.sleep(0.3)
    finally:
        loop.stop()
        thread.join(30)
    assert not thread.is_alive()
    return int(metrics.RESTORE_RECORDS.labels("counter", changelog)._value.get())


def test_sigkill_mid_transaction_leaves_committed_state_only_and_restart_reads_the_tail(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    source, changelog, group = _topics(kafka_bootstrap)
    expected = _produce(kafka_bootstrap, source, 300)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_STATE_DIR": str(tmp_path)}
    args = [sys.executable, "-m", "tests.integration.store_worker", kafka_bootstrap, source, changelog, group, "w0",
            "230"]
    worker = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert worker.wait(90) == -signal.SIGKILL, worker.stderr.read().decode()[-2000:] if worker.stderr else ""

    # The killed transaction reached the broker (uncommitted) but not the store: the store holds exactly the
    # committed changelog up to its offset
    stored, offsets = _store_state(tmp_path, group, changelog)
    committed, committed_records = _changelog(kafka_bootstrap, changelog)
    _, uncommitted_records = _changelog(kafka_bootstrap, changelog, isolation="read_uncommitted")
    assert uncommitted_records > committed_records, "the kill did not land inside a transaction"
    at_offset, _ = _changelog(kafka_bootstrap, changelog, upto=offsets)
    assert stored == at_offset
    assert sum(stored.values()) <= sum(committed.values()) < 230

    # A restart reads only what was committed after the stores' offsets, and ends with exact counts
    _, upto_offsets = _changelog(kafka_bootstrap, changelog, upto=offsets)
    tail = committed_records - upto_offsets  # committed records at or past the stores' offsets
    restored = _run_until(kafka_bootstrap, source, changelog, group, tmp_path, expected)
    assert restored == tail
    assert restored < committed_records
    stored, _ = _store_state(tmp_path, group, changelog)
    assert stored == expected


def test_a_store_behind_its_changelog_restores_the_tail_and_a_broken_one_restores_in_full(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    source, changelog, group = _topics(kafka_bootstrap)
    first = _produce(kafka_bootstrap, source, 100)
    _run_until(kafka_bootstrap, source, changelog, group, tmp_path, first)
    snapshot = tmp_path.parent / f"{tmp_path.name}-snapshot"
    shutil.copytree(tmp_path, snapshot)
    _, at_snapshot = _changelog(kafka_bootstrap, changelog)

    more = _produce(kafka_bootstrap, source, 100, first=100)
    expected = {k: first.get(k, 0) + more.get(k, 0) for k in KEYS}
    _run_until(kafka_bootstrap, source, changelog, group, tmp_path, expected)
    _, total = _changelog(kafka_bootstrap, changelog)

    # the stores as they were after the first 100: a restart re-applies exactly the 100 records after them
    shutil.rmtree(tmp_path)
    shutil.copytree(snapshot, tmp_path)
    extra = _produce(kafka_bootstrap, source, 10, first=200)
    expected = {k: expected[k] + extra.get(k, 0) for k in KEYS}
    restored = _run_until(kafka_bootstrap, source, changelog, group, tmp_path, expected)
    assert restored == total - at_snapshot
    assert _store_state(tmp_path, group, changelog)[0] == expected

    # a corrupt store is wiped and restored in full
    for p in range(PARTITIONS):
        current = tmp_path / group / "w0" / f"{changelog}-{p}" / "CURRENT"
        current.write_bytes(b"garbage\n")
    _, total = _changelog(kafka_bootstrap, changelog)
    restored = _run_until(kafka_bootstrap, source, changelog, group, tmp_path, expected)
    assert restored == total
    assert _store_state(tmp_path, group, changelog)[0] == expected
