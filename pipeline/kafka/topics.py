"""Topic specs, defined once in code, and the admin operations that apply them.

Every topic has a documented key, partition count, retention and cleanup policy. ``create``
is idempotent: it creates what is missing and reports drift (partitions, cleanup policy,
retention, timestamp type) on topics that exist but differ from the spec.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at run time, not in its __all__
    AdminClient,
    ConfigResource,
    NewTopic,
)

from ..config import Settings

DAY_MS = 24 * 3600 * 1000

EVENTS = "events"
SYSTEM_EVENTS = "system-events"
RUN_COMMANDS = "run-commands"
RUNS = "runs"
THROTTLES = "throttles"
INVOCATIONS = "invocations"
CANCEL_INDEX = "cancel-index"
CANCELLATIONS = "cancellations"
DEAD_LETTER = "dead-letter"
EVENT_IDS = "event-ids"
DEAD_LETTER_REPLAYED = "dead-letter-replayed"
FUNCTIONS = "functions"
APP_SYNCS = "app-syncs"
RATE_LIMITS = "rate-limits"
DROPPED_EVENTS = "dropped-events"
DEBOUNCES = "debounces"
BATCHES = "batches"


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like. ``partitions=None`` means the settings' default partition count."""

    name: str
    key: str
    doc: str
    cleanup_policy: str = "delete"
    retention_ms: int = 7 * DAY_MS
    partitions: int | None = None
    config: dict[str, str] = field(default_factory=dict)

    def full_config(self) -> dict[str, str]:
        """The topic configs we own: cleanup, retention and any extras."""
        conf = {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}
        conf.update(self.config)
        return conf


SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(EVENTS, key="event id", doc="user events in; the broker stamps the receive time",
              config={"message.timestamp.type": "LogAppendTime"}),
    TopicSpec(EVENT_IDS, key="event id; co-partitioned with events",
              doc="the matcher's dedup table: the first record of each event id, tombstoned after the window",
              cleanup_policy="compact", retention_ms=-1,
              config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)}),
    TopicSpec(SYSTEM_EVENTS, key="event id (run id for function.* events)",
              doc="inngest/function.* system events; consumed by the matcher like user events",
              config={"message.timestamp.type": "LogAppendTime"}),
    TopicSpec(RUN_COMMANDS, key="run id (runs of a function with concurrency limits: sent to the partition of "
              "their slot set)", doc="start and cancel commands and the workers' step outcomes, to the run owner"),
    TopicSpec(INVOCATIONS, key="run id", doc="handler invocations from the run owner to the workers",
              retention_ms=1 * DAY_MS),
    TopicSpec(RUNS, key="run id", doc="run state, the source of truth; co-partitioned with run-commands",
              cleanup_policy="compact", retention_ms=-1,
              config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)}),
    TopicSpec(THROTTLES, key="throttle key (function and key value)",
              doc="the run owner's throttle pacing state per key; co-partitioned with run-commands",
              cleanup_policy="compact", retention_ms=-1,
              config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)}),
    TopicSpec(CANCEL_INDEX, key="join key NUL run id | event id; partitioned by join key",
              doc="cancel listeners and recent cancel signals, joined by the canceller",
              cleanup_policy="compact", retention_ms=-1,
              config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)}),
    TopicSpec(CANCELLATIONS, key="cancellation id", doc="bulk cancellations, read whole by every run owner",
              cleanup_policy="compact", retention_ms=-1, partitions=1),
    TopicSpec(DEAD_LETTER, key="original key", doc="records a service could not decode or process, reason in headers",
              retention_ms=30 * DAY_MS),
    TopicSpec(DEAD_LETTER_REPLAYED, key="dead letter partition:offset", partitions=1,
              doc="`pipeline dlq replay`: which dead letters were re-published (each once)",
              cleanup_policy="compact", retention_ms=-1),
    TopicSpec(FUNCTIONS, key="function id", partitions=1,
              doc="functions synced from apps served over HTTP, read whole and followed by every service",
              cleanup_policy="compact", retention_ms=-1),
    TopicSpec(APP_SYNCS, key="app id (its URL when the sync named none)", partitions=1,
              doc="the last sync of each app served over HTTP, with its result or its refusal, for the API and the UI",
              cleanup_policy="compact", retention_ms=-1),
    TopicSpec(RATE_LIMITS, key="function id US option US key value; partition = the run-commands partition owning it",
              doc="the run owner's rate-limit and idempotency state (GCRA), its state store's changelog",
              cleanup_policy="compact", retention_ms=-1,
              config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)}),
    TopicSpec(DROPPED_EVENTS, key="function id", doc="events dropped by a rate limit or idempotency, for the API"),
    # flow control (issue 21): the run owner's pending debounces and batches, co-partitioned with run-commands
    TopicSpec(DEBOUNCES, key="function id US key value", doc="pending debounces (run owner state changelog)",
              cleanup_policy="compact", retention_ms=-1, config={"min.cleanable.dirty.ratio": "0.1"}),
    TopicSpec(BATCHES, key="function id US key value", doc="pending batches (run owner state changelog)",
              cleanup_policy="compact", retention_ms=-1, config={"min.cleanable.dirty.ratio": "0.1"}),
)


def spec(name: str) -> TopicSpec:
    """The spec of a default topic by its unprefixed name."""
    for s in SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


@dataclass
class TopicReport:
    """What ``create`` did for one topic: created, ok, or the drift it found."""

    topic: str
    action: str
    drift: list[str] = field(default_factory=list)


def _partitions(s: TopicSpec, settings: Settings) -> int:
    return s.partitions if s.partitions is not None else settings.partitions


def create_topics(admin: AdminClient, settings: Settings, specs: tuple[TopicSpec, ...] = SPECS,
                  timeout: float = 30.0) -> list[TopicReport]:
    """Create missing topics and report drift on existing ones. Safe to run any number of times."""
    existing = admin.list_topics(timeout=timeout).topics
    reports: list[TopicReport] = []
    to_create: list[NewTopic] = []
    for s in specs:
        name = settings.topic(s.name)
        if name in existing:
            reports.append(TopicReport(name, "exists"))
            continue
        rf = min(settings.replication_factor, max(1, len(admin.list_topics(timeout=timeout).brokers)))
        conf = s.full_config()
        if rf > 1:
            conf["min.insync.replicas"] = str(min(2, rf))
        to_create.append(NewTopic(name, num_partitions=_partitions(s, settings), replication_factor=rf, config=conf))
        reports.append(TopicReport(name, "created"))
    if to_create:
        by_topic = {r.topic: r for r in reports}
        for name, fut in admin.create_topics(to_create, operation_timeout=timeout).items():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                # metadata lagged behind a creation (ours a moment ago, or another instance's)
                by_topic[name].action = "exists"
    for report in reports:
        if report.action == "exists":
            report.drift = drift(admin, settings, _by_full_name(settings, report.topic, specs), timeout)
            if report.drift:
                report.action = "drift"
    return reports


def _by_full_name(settings: Settings, full: str, specs: tuple[TopicSpec, ...]) -> TopicSpec:
    for s in specs:
        if settings.topic(s.name) == full:
            return s
    raise KeyError(full)


def drift(admin: AdminClient, settings: Settings, s: TopicSpec, timeout: float = 30.0) -> list[str]:
    """Differences between a live topic and its spec, as readable lines."""
    name = settings.topic(s.name)
    lines: list[str] = []
    meta = admin.list_topics(topic=name, timeout=timeout).topics[name]
    want_parts = _partitions(s, settings)
    if len(meta.partitions) != want_parts:
        lines.append(f"partitions: {len(meta.partitions)} (spec {want_parts})")
    live = describe_config(admin, name, timeout)
    for key, want in s.full_config().items():
        have = live.get(key)
        if have != want:
            lines.append(f"{key}: {have} (spec {want})")
    return lines


#: How long a topic that the broker does not know yet is asked for again (see describe_config)
UNKNOWN_TOPIC_GRACE_S = 5.0


def describe_config(admin: AdminClient, topic: str, timeout: float = 30.0) -> dict[str, str]:
    """The live configs of a topic as a plain dict.

    A topic created or altered a moment ago can still be unknown to the broker that answers (its metadata
    catches up from the controller a little later): "unknown topic" is asked again for a few seconds before it
    is raised. Seen in a CI run: a config altered, then read back, answered UNKNOWN_TOPIC_OR_PART once."""
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + min(timeout, UNKNOWN_TOPIC_GRACE_S)
    while True:
        try:
            entries = admin.describe_configs([res], request_timeout=timeout)[res].result()
            return {k: v.value for k, v in entries.items()}
        except KafkaException as exc:
            unknown = exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if not unknown or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def partition_count(admin: AdminClient, topic: str, timeout: float = 10.0) -> int:
    """How many partitions a live topic has."""
    meta = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaException(f"topic {topic} does not exist; run `pipeline topics create`")
    return len(meta.partitions)
