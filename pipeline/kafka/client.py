"""Client configuration builders: one place that decides how producers and consumers talk to Kafka.

Keyed records use the Java client's partitioner (murmur2), so that topics keyed by the same
value (``run-commands`` and ``runs`` by run id) are co-partitioned whatever client wrote them.
"""

from __future__ import annotations

import os
from typing import Any

from ..config import Settings

DEFAULT_DEV_BOOTSTRAP = "127.0.0.1:19092"
FETCH_WAIT_MAX_MS = 50


def bootstrap(settings: Settings | None = None) -> str:
    """The bootstrap servers: settings / ``PIPELINE_BOOTSTRAP_SERVERS``, else the embedded dev broker's address."""
    if settings is not None and settings.bootstrap_servers:
        return settings.bootstrap_servers
    return os.environ.get("PIPELINE_BOOTSTRAP_SERVERS") or DEFAULT_DEV_BOOTSTRAP


def producer_config(servers: str, *, transactional_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A producer that batches (linger 5 ms), is idempotent, and acks=all so nothing acknowledged is lost."""
    conf: dict[str, Any] = {
        "bootstrap.servers": servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
        "message.max.bytes": 4 * 1024 * 1024,
    }
    if transactional_id:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = 30000
        # A transaction begun right after a commit often meets CONCURRENT_TRANSACTIONS on
        # send_offsets; librdkafka retries after retry.backoff.ms, 100 ms by default, which
        # stalls every hop of the pipeline. The Java producer uses 20 ms for the same case.
        conf["retry.backoff.ms"] = 10
        conf["retry.backoff.max.ms"] = 100
    conf.update(extra)
    return conf


def consumer_config(servers: str, group_id: str | None, *, read_committed: bool = True,
                    instance_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A consumer that never auto-commits (the loop commits with its output) and reads only committed data.

    ``instance_id`` makes it a static member of its group (KIP-345): a restarted process with the same id
    rejoins with its old partitions and no rebalance, so a SIGKILL costs seconds, not a session timeout
    plus a stop-the-world rebalance of every member."""
    conf: dict[str, Any] = {
        "bootstrap.servers": servers,
        "group.id": group_id or "pipeline-reader",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        # Cooperative-sticky: a member joining or leaving moves only the partitions that must move; the
        # others keep being consumed through the rebalance (range stopped every member for every change).
        "partition.assignment.strategy": "cooperative-sticky",
        # The broker's default minimum. A member that dies unseen (SIGKILL) loses its partitions after this
        # long; with static membership a restarted member takes them back at once instead.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 300000,
        # How long the broker holds a fetch that has nothing to return. New bytes *and* commit markers end the
        # wait at once (Kafka 4.x completes a waiting read_committed fetch when the last stable offset moves:
        # tests/integration/test_fetch_wakeup.py), so this costs no latency on a hop; it sets how often an idle
        # consumer asks, and how long a seek or a new assignment may wait for the fetch already in flight.
        # An idle `pipeline dev` used 0.54 of a core at 10 ms (broker 0.24, services 0.30), 0.31 at 25 ms,
        # 0.25 at 50 ms, 0.19-0.26 at 100 ms.
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
    }
    if instance_id:
        conf["group.instance.id"] = instance_id
    conf.update(extra)
    return conf


def consume_available(consumer: Any, max_records: int, timeout: float) -> list[Any]:
    """Wait up to ``timeout`` for the first record only, then take what is already fetched (up to
    ``max_records``). ``consumer.consume(n, timeout)`` waits until it has n records *or* the timeout passes,
    so a record that arrives alone waits out the whole timeout: readers that did so showed a run's new state
    up to their poll timeout late (measured: 0-100 ms, uniformly, for consume(100, 0.1))."""
    msgs: list[Any] = consumer.consume(1, timeout=timeout)
    if msgs and max_records > 1:
        msgs += consumer.consume(max_records - 1, timeout=0)
    return msgs


def admin_config(servers: str) -> dict[str, Any]:
    """Admin client config."""
    return {"bootstrap.servers": servers}
