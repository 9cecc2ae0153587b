"""Helpers for tests that talk to a real Kafka cluster.

They wait instead of sleeping: Kafka is asynchronous (topic creation propagates, records
become visible when a transaction commits), so a test that asserts right away is flaky and
one that sleeps is slow. Each helper polls until the expected state or a deadline, and on
timeout fails with what it *did* see, so a red test explains itself.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

Isolation = Literal["read_committed", "read_uncommitted"]
_SEPARATORS = "-._"


def unique_name(prefix: str = "t") -> str:
    """``prefix`` plus 8 random hex chars, e.g. ``orders-3f9a1c2e``.

    Tests share one broker for speed; unique topic and group names keep them independent
    (and re-runnable) without deleting anything.
    """
    sep = "" if not prefix or prefix[-1] in _SEPARATORS else "-"
    return f"{prefix}{sep}{uuid.uuid4().hex[:8]}"


def until(check: Callable[[], Any], timeout: float = 20.0, what: str = "the condition", *, every: float = 0.1,
          ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Call ``check`` until it returns something truthy, and return that; fail after ``timeout`` seconds.

    ``ignore`` lists exceptions that count as "not yet" (an HTTP server still starting: ``httpx.HTTPError``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except ignore:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS reports free on ``host`` right now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def _topic_ready(admin: AdminClient, name: str, partitions: int | None, timeout: float) -> bool:
    """True once metadata shows ``name`` with its partitions, each with a leader."""
    try:
        md = admin.list_topics(topic=name, timeout=max(timeout, 0.1)).topics.get(name)
    except KafkaException:
        return False
    if md is None or md.error is not None or not md.partitions:
        return False
    if partitions is not None and len(md.partitions) < partitions:
        return False
    return all(p.leader >= 0 for p in md.partitions.values())


def wait_for_topic(bootstrap: str, name: str, partitions: int | None = None, timeout: float = 30.0) -> None:
    """Wait until ``name`` exists with leaders for all partitions; AssertionError on timeout.

    Creation returns before every broker knows the topic; producing or assigning too early
    gets UNKNOWN_TOPIC_OR_PART errors, so tests wait here first.
    """
    admin = _admin(bootstrap)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _topic_ready(admin, name, partitions, min(2.0, deadline - time.monotonic())):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {name!r} did not become available on {bootstrap} within {timeout:.0f}s")


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: Mapping[str, str] | None = None, *,
                 replication_factor: int | None = None, timeout: float = 30.0) -> str:
    """Create topic ``name`` (idempotent) and wait until it is usable; returns the name.

    ``replication_factor=None`` uses the broker default (1 on a single node, 3 on the
    3-node embedded cluster). An existing topic is accepted so reruns and shared fixtures work.
    """
    admin = _admin(bootstrap)
    topic = NewTopic(name, num_partitions=partitions, replication_factor=replication_factor or -1,
                     config=dict(config or {}))
    future = admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)[name]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    wait_for_topic(bootstrap, name, partitions, timeout)
    return name


def produce(bootstrap: str, topic: str, values: Iterable[bytes | str | None], *, key: bytes | str | None = None,
            headers: Mapping[str, bytes | str] | None = None, timeout: float = 30.0,
            config: Mapping[str, Any] | None = None) -> int:
    """Produce ``values`` (acks=all, idempotent) and wait for every delivery; returns the count.

    Raises AssertionError naming the first failed delivery, so a test never continues
    believing a record was written when it was not.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         **dict(config or {})})
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    count = 0
    for value in values:
        producer.produce(topic, value=value, key=key, headers=dict(headers or {}), on_delivery=on_delivery)
        producer.poll(0)
        count += 1
    remaining = producer.flush(timeout)
    if errors:
        raise AssertionError(f"producing to {topic!r} failed: {errors[0]}")
    if remaining:
        raise AssertionError(f"{remaining} record(s) to {topic!r} not delivered within {timeout:.0f}s")
    return count


def _partitions(consumer: Consumer, topic: str, deadline: float) -> list[int]:
    """Partition ids of ``topic``, waiting for it to exist (it may be created by the code under test)."""
    while True:
        try:
            md = consumer.list_topics(topic, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            tmd = md.topics.get(topic)
            if tmd is not None and tmd.error is None and tmd.partitions:
                return sorted(tmd.partitions)
        except KafkaException:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"topic {topic!r} does not exist (waited for it to appear)")
        time.sleep(0.1)


def _describe(msg: Message, limit: int = 160) -> str:
    """One line per record for failure messages: where it is and what it holds."""
    value = msg.value()
    text = repr(value if value is None or len(value) <= limit else value[:limit] + b"...")
    return f"  p{msg.partition()}@{msg.offset()} key={msg.key()!r} value={text}"


def await_records(bootstrap: str, topic: str, count: int, timeout: float = 30.0,
                  predicate: Callable[[Any], bool] | None = None, decode: Callable[[Any], Any] | None = None,
                  from_beginning: bool = True, isolation: Isolation = "read_committed") -> list[Any]:
    """Wait until ``count`` records (matching ``predicate``) are readable from ``topic``; return them.

    Returns the first ``count`` matches in consumption order (per partition in offset order):
    confluent_kafka ``Message`` objects, or ``decode(message.value())`` when ``decode`` is
    given (``predicate`` then receives the decoded value). Reads every partition by
    assignment, without joining a consumer group, so there is no rebalance delay and no
    committed offset left behind. ``isolation="read_committed"`` (default) hides aborted
    and still-open transactions, as the runtime's consumers see them.
    ``from_beginning=False`` only sees records written after the consumer got its
    assignment. To check that *no more* records arrive, await ``count + 1`` with a short
    timeout and expect AssertionError.

    Raises AssertionError after ``timeout`` seconds listing the records that were seen.
    """
    deadline = time.monotonic() + timeout
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": unique_name("await-records"),
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "isolation.level": isolation,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
    })
    seen: list[Message] = []
    matched: list[Any] = []
    try:
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in _partitions(consumer, topic, deadline)])
        while len(matched) < count and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=max(0.05, min(0.5, deadline - time.monotonic()))):
                if msg.error() is not None:
                    continue
                seen.append(msg)
                item = decode(msg.value()) if decode is not None else msg
                if predicate is None or predicate(item):
                    matched.append(item)
    finally:
        consumer.close()
    if len(matched) < count:
        shown = "\n".join(_describe(m) for m in seen[:20]) + ("\n  ..." if len(seen) > 20 else "")
        what = " matching the predicate" if predicate is not None else ""
        raise AssertionError(
            f"expected {count} record(s){what} in {topic!r} ({isolation}) within {timeout:.0f}s, "
            f"got {len(matched)}; saw {len(seen)} record(s):\n{shown or '  (none)'}"
        )
    return matched[:count]
