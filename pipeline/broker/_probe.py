"""Ask a Kafka cluster whether it is really usable, with confluent-kafka clients.

"Process started" is not "ready": the broker answers metadata first, and the transaction
coordinator needs ``__transaction_state`` created and loaded before ``init_transactions()``
works. Waiting for both here means the first exactly-once producer of an app or a test
never hits "coordinator load in progress".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

#: librdkafka logs every refused connection at level 3; while a broker boots that is
#: expected, so probe clients only log emergencies.
_QUIET: dict[str, Any] = {"log_level": 0}


def _client_conf(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Common probe client config: quiet, quick reconnects."""
    return {"bootstrap.servers": bootstrap, "reconnect.backoff.max.ms": 500, **_QUIET, **extra}


def broker_count(bootstrap: str, timeout: float) -> int:
    """Number of brokers in the cluster metadata; raises KafkaException if nobody answers."""
    admin = AdminClient(_client_conf(bootstrap))
    return len(admin.list_topics(timeout=max(timeout, 0.1)).brokers)


def answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True if ``bootstrap`` returns metadata within ``timeout`` seconds."""
    try:
        return broker_count(bootstrap, timeout) > 0
    except KafkaException:
        return False


def _retry_until(deadline: float, check_alive: Callable[[], None], attempt: Callable[[float], bool],
                 timeout_message: str) -> None:
    """Call ``attempt(remaining seconds)`` every 0.2 s until it returns True; TimeoutError at ``deadline``.

    ``check_alive`` is called before every attempt and raises if a node process died, so a
    crash is reported at once with its log instead of after the whole timeout.
    """
    while True:
        check_alive()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(timeout_message)
        if attempt(remaining):
            return
        time.sleep(0.2)


def wait_metadata(bootstrap: str, brokers: int, deadline: float, check_alive: Callable[[], None]) -> None:
    """Wait until at least ``brokers`` brokers are registered (``check_alive``: see :func:`_retry_until`)."""
    admin = AdminClient(_client_conf(bootstrap))

    def registered(remaining: float) -> bool:
        try:
            return len(admin.list_topics(timeout=min(2.0, remaining)).brokers) >= brokers
        except KafkaException:
            return False

    _retry_until(deadline, check_alive, registered, f"{bootstrap} did not report {brokers} broker(s) in time")


def wait_transactions(bootstrap: str, deadline: float, check_alive: Callable[[], None]) -> None:
    """Wait until a transactional producer can ``init_transactions()`` (coordinator loaded)."""
    producer = Producer(_client_conf(bootstrap, **{"transactional.id": f"pipeline-ready-probe-{uuid.uuid4().hex}"}))

    def initialized(remaining: float) -> bool:
        try:
            producer.init_transactions(min(10.0, remaining))
            return True
        except KafkaException as exc:
            err = exc.args[0]
            if getattr(err, "fatal", lambda: False)():
                raise
            return False  # retriable or timed out: librdkafka allows calling it again

    try:
        _retry_until(deadline, check_alive, initialized,
                     f"the transaction coordinator of {bootstrap} did not become ready in time")
    finally:
        producer.flush(0)


def warm_group_coordinator(bootstrap: str, timeout: float) -> None:
    """Best effort: make the broker create ``__consumer_offsets`` now.

    An offset fetch needs the group coordinator, whose first lookup creates the offsets
    topic; doing it here keeps that second out of the first consumer-group test.
    """
    consumer = Consumer(_client_conf(bootstrap, **{"group.id": f"pipeline-ready-probe-{uuid.uuid4().hex}"}))
    try:
        consumer.committed([TopicPartition("__pipeline_probe", 0)], timeout=max(timeout, 0.1))
    except KafkaException:
        pass
    finally:
        consumer.close()
