"""Proof that every matcher and run owner has applied the ``functions`` topic up to a point, not a settle time.

A sync (``POST /fn/register``) and a wait name the HTTP worker learns at run time are records on the
``functions`` topic. An event sent once the sync has answered, or once a wait was reported, must find them in
whichever matcher reads it, and the run it starts in whichever run owner takes its start command (one that does
not know the function dead-letters the start). So the writer waits for a proof before it answers:

* Each matcher and run owner publishes how far its follower has applied the topic: the committed offset of a
  consumer group of its own, ``<service group>-functions-applied-<member>`` (member = its static
  ``group.instance.id``, which is also its ``client.id``), written with the admin API after each round the
  follower applied (:class:`ProgressReporter`, through :class:`FunctionsApplied`). Committed offsets live in
  ``__consumer_offsets``: they survive restarts and need no topic of their own, and an offset read back is one
  the broker acknowledged.
* The writer (:class:`AppliedCheck`) lists the live members of both groups (``describe_consumer_groups``) and
  waits until the published offset of every one of them is at least the offset after its write, within
  ``PIPELINE_FUNCTIONS_APPLY_TIMEOUT_MS``; when one lags longer it names the laggards (the caller answers with an
  error, and ``pipeline_functions_apply_timeouts_total`` counts it).
* A member that is not in its group when the check runs can only receive partitions later; on each assignment it
  reads the topic up to its end offset *as of then* before it processes a record (:meth:`FunctionsApplied.ready`),
  so it has applied every write acknowledged before it joined.

So an event produced after the check passed is matched, and its run started, by registries that hold the write,
whichever member holds the partitions: the members checked applied it first, and a later one catches up when
assigned. (A worker that does not know a function yet fails that attempt, which is retried: nothing is lost.)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client import Counter, Histogram

from ..config import Settings
from ..kafka import topics as t
from ..kafka.client import admin_config, bootstrap
from ..protocol.ids import consumer_group

log = logging.getLogger("pipeline.apps")

APPLY_WAIT = Histogram("pipeline_functions_apply_wait_seconds",
                       "time a sync or a learned wait waited for every matcher to apply the functions topic",
                       ["waiter"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
APPLY_TIMEOUTS = Counter("pipeline_functions_apply_timeouts_total",
                         "syncs and learned waits refused because a matcher had not applied them in time", ["waiter"])
ADMIN_TIMEOUT_S = 10.0


def end_offset(admin: AdminClient, topic: str) -> int:
    """The end offset of the ``functions`` topic's one partition now (its own admin client: a consumer that
    another thread is consuming with blocks in a watermark query)."""
    tp = TopicPartition(topic, 0)
    futures = admin.list_offsets({tp: OffsetSpec.latest()})  # type: ignore[no-untyped-call]
    return int(futures[tp].result(timeout=ADMIN_TIMEOUT_S).offset)


def progress_group(matcher_group: str, member: str) -> str:
    """The consumer group whose committed offset on the ``functions`` topic is one matcher member's progress."""
    return f"{matcher_group}-functions-applied-{member}"


class ProgressReporter:
    """Publishes one matcher's applied position (the offset after the last record its registry holds)."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.admin = AdminClient(admin_config(bootstrap(settings)))
        self.topic = settings.topic(t.FUNCTIONS)
        self.group = group
        self.reported = -1
        self._lock = threading.Lock()  # one report at a time, so a smaller position never lands after a larger one

    def report(self, position: int) -> None:
        """Commit ``position`` to the member's group if it moved (errors are logged; the next round retries)."""
        with self._lock:
            if position <= self.reported:
                return
            request = ConsumerGroupTopicPartitions(self.group, [TopicPartition(self.topic, 0, position)])
            try:
                for future in self.admin.alter_consumer_group_offsets([request]).values():
                    future.result(timeout=ADMIN_TIMEOUT_S)
            except KafkaException as exc:
                log.warning("could not publish the functions topic's applied position",
                            extra={"group": self.group, "position": position, "error": str(exc)})
                return
            self.reported = position


class FunctionsApplied:
    """A service's side of the proof (the matcher's and the run owner's): publish how far its registry has
    applied the ``functions`` topic, and catch up with it before the first record of newly assigned partitions."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._pending = False

    def bind(self, settings: Settings, group_id: str) -> None:
        """The service's loop is made: publish from now on (nothing without a follower: no synced functions)."""
        follower = self.registry.follower
        if follower is not None:
            follower.report_to(ProgressReporter(settings, progress_group(group_id, settings.instance_id)))

    def assigned(self) -> None:
        """Partitions were assigned (in the rebalance callback: no broker request here, see :meth:`ready`)."""
        self._pending = True

    def ready(self) -> None:
        """Before a record is processed: after an assignment, apply every function record written until now."""
        if self._pending:
            self._pending = False
            follower = self.registry.follower
            if follower is not None:
                follower.catch_up()


SERVICES = ("matcher", "run-owner")  # the services whose registries must hold a write before it is reported


class AppliedCheck:
    """Waits until every live matcher and run owner has applied the ``functions`` topic up to an offset."""

    def __init__(self, settings: Settings, waiter: str) -> None:
        self.admin = AdminClient(admin_config(bootstrap(settings)))
        self.topic = settings.topic(t.FUNCTIONS)
        self.groups = [consumer_group(settings.topic_prefix, service) for service in SERVICES]
        self.timeout_s = settings.functions_apply_timeout_ms / 1000
        self.waiter = waiter

    def end_offset(self) -> int:
        """The topic's end offset now: a target that covers every record written so far."""
        return end_offset(self.admin, self.topic)

    def members(self, group: str) -> list[str]:
        """A group's live members, by instance id (static member id, else client id)."""
        future = self.admin.describe_consumer_groups([group])[group]
        try:
            description = future.result(timeout=ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return []  # the service never ran: nothing to wait for (one that starts loads the topic first)
            raise
        return sorted({m.group_instance_id or m.client_id for m in description.members})

    def applied(self, group: str, member: str) -> int:
        """The position a member of ``group`` published (-1 when it published none yet)."""
        progress = progress_group(group, member)
        request = ConsumerGroupTopicPartitions(progress, [TopicPartition(self.topic, 0)])
        result = self.admin.list_consumer_group_offsets([request])[progress].result(timeout=ADMIN_TIMEOUT_S)
        for tp in result.topic_partitions:
            if tp.error is None and tp.offset >= 0:
                return int(tp.offset)
        return -1

    def lagging(self, target: int) -> dict[str, int]:
        """Members (``group/member``) whose published position is below ``target``, with that position."""
        out = {}
        for group in self.groups:
            for member in self.members(group):
                position = self.applied(group, member)
                if position < target:
                    out[f"{group}/{member}"] = position
        return out

    def wait(self, target: int, timeout_s: float | None = None) -> dict[str, int]:
        """Block until every live member has applied the topic up to ``target`` (exclusive: the offset after a
        write). Returns the members still behind when the time is up (empty: proven). Admin errors are retried
        until the deadline, then count as lagging under ``"?"``."""
        started = time.monotonic()
        deadline = started + (self.timeout_s if timeout_s is None else timeout_s)
        pause = 0.005
        while True:
            try:
                behind = self.lagging(target)
            except KafkaException as exc:
                behind = {f"? ({exc})": -1}
            if not behind:
                APPLY_WAIT.labels(self.waiter).observe(time.monotonic() - started)
                return {}
            if time.monotonic() >= deadline:
                APPLY_TIMEOUTS.labels(self.waiter).inc()
                log.warning("services have not applied the functions topic in time",
                            extra={"target": target, "lagging": behind, "waiter": self.waiter})
                return behind
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def describe_lag(behind: dict[str, int], target: int) -> str:
    """``behind`` in words, for an error answer."""
    members = ", ".join(f"{m} at {p}" if p >= 0 else f"{m} (no position yet)" for m, p in sorted(behind.items()))
    return f"not every matcher and run owner has applied the functions topic up to offset {target}: {members}"
