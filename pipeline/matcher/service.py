"""The matcher: events and system events in; run starts, cancel listeners and cancel signals out.

An event whose id was already received within the dedup window (24 h) is skipped first (see
:mod:`pipeline.matcher.dedup`). For each other event it (1) starts every function whose trigger matches, with a run id
derived from (function id, event id) so duplicates and replays start nothing new; (2) registers the
new run's cancel listeners, keyed and partitioned by join key; (3) if the event's name is a
cancel event of any function, emits a cancel signal under each join key it can hit.
Everything one event causes commits in one transaction with its offset, except its cancel signals: they
are sent at once, outside the transaction (``at_once``), and acknowledged before the offset commits, so the
canceller sees them a commit sooner. A signal is idempotent (a keyed record; a cancel or resume it causes
twice is a no-op the second time), so a batch that aborts and is processed again may send it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from confluent_kafka import Message, TopicPartition
from confluent_kafka.admin import AdminClient

from ..apps.applied import FunctionsApplied
from ..config import Settings
from ..kafka import metrics
from ..kafka import topics as t
from ..kafka.client import admin_config, bootstrap
from ..kafka.emitter import Emitter
from ..kafka.processor import Processor, override
from ..kafka.tables import PartitionTables, StoredTables
from ..protocol.ids import derived_ulid
from ..protocol.joins import signal_keys, signal_routes
from ..protocol.keys import partition_for, signal_record_key
from ..protocol.starts import StartCodec
from ..protocol.sysevents import FUNCTION_INVOKED, SCHEDULED_TIMER
from ..sdk.app import Registry
from ..serde import CANCEL_SIGNAL, EVENT_SEEN, Serde
from ..serde.events import read_event
from ..serde.models import event_record_to_dict
from ..serde.registry import confluent_reader
from .dedup import Seen, SeenEvents
from .routing import TriggerIndex

log = logging.getLogger("pipeline.matcher")


DIRECTED = frozenset({FUNCTION_INVOKED, SCHEDULED_TIMER})  # events naming the function they start


class OversizedRecord(ValueError):
    """A record larger than ``PIPELINE_MAX_EVENT_BYTES``: dead-lettered, never processed."""


class InvalidEvent(ValueError):
    """A decodable event that breaks the envelope's rules (dead-lettered with the reason)."""


class Matcher(Processor):
    """The matcher processor for :class:`pipeline.kafka.loop.ServiceLoop`."""

    name = "matcher"

    def __init__(self, registry: Registry, settings: Settings, serde: Serde | None = None) -> None:
        self.settings = settings
        self.serde = serde or Serde()
        self.starts = StartCodec(self.serde)  # start commands encoded in pieces (pipeline/protocol/starts.py)
        self.confluent = confluent_reader(settings)  # None without PIPELINE_SCHEMA_REGISTRY_URL
        self.registry = registry
        self._index_functions()
        registry.on_change(self._index_functions)  # functions synced from apps over HTTP come and go
        self.events_topic = settings.topic(t.EVENTS)
        self.system_topic = settings.topic(t.SYSTEM_EVENTS)
        self.commands_topic = settings.topic(t.RUN_COMMANDS)
        self.index_topic = settings.topic(t.CANCEL_INDEX)
        admin = AdminClient(admin_config(bootstrap(settings)))
        self.index_partitions = t.partition_count(admin, self.index_topic)
        self.command_partitions = t.partition_count(admin, self.commands_topic)
        self.max_bytes = settings.max_event_bytes
        self.servers = bootstrap(settings)
        self.ids_topic = settings.topic(t.EVENT_IDS)
        self.dedup_window_ms = settings.event_dedup_window_ms
        # events partition -> its dedup table, restored by the loop from event-ids (read_committed: what the
        # matcher wrote with its offsets, so the table matches the committed position exactly)
        self.seen: StoredTables[SeenEvents] = StoredTables(
            self.events_topic, lambda store: SeenEvents(store, self.dedup_window_ms, self._load_seen),
            changelog=self.ids_topic, label="matcher event ids")
        self._decoded: dict[tuple[int, int], dict[str, Any]] = {}  # events decoded by urgent(), for process()
        self._next_expiry = 0
        self.applied = FunctionsApplied(registry)  # the proof that syncs are in effect (pipeline.apps.applied)
        self.runs_started = 0
        self.signals_sent = 0
        self.duplicates = 0

    def _index_functions(self) -> None:
        """(Re)build the trigger index and signal routes; each is swapped in whole (read on the loop's thread)."""
        functions = self.registry.functions
        self.triggers = TriggerIndex(functions)
        self.functions_by_id = self.registry.by_id
        self.routes = signal_routes(functions)

    @override
    def topics(self) -> list[str]:
        return [self.events_topic, self.system_topic]

    # -- the dedup table ------------------------------------------------------------------------------------

    def _load_seen(self, table: SeenEvents, msg: Message) -> None:
        """Apply one ``event-ids`` record to its partition's dedup table (a tombstone forgets the id)."""
        key, value = msg.key(), msg.value()
        if key is None:
            raise ValueError("event-ids record without a key")
        record = None if value is None else self.serde.decode_as(EVENT_SEEN, value)
        table.restore(key.decode(), None if record is None else Seen(record["offset"], record["first_seen"]))

    @override
    def partition_tables(self) -> Sequence[PartitionTables[Any]]:
        return [self.seen] if self.dedup_window_ms else []

    @override
    def bind(self, loop: Any) -> None:
        """Publish how far this member has applied the functions topic (:mod:`pipeline.apps.applied`): a sync or
        a learned wait name is reported only once every member of the group has applied it."""
        self.applied.bind(self.settings, loop.group_id)

    @override
    def assigned(self, partitions: list[TopicPartition]) -> None:
        self._decoded.clear()
        self.applied.assigned()  # a member that joined after a writer checked the group catches up first

    @override
    def revoked(self, partitions: list[TopicPartition]) -> None:
        self._decoded.clear()

    @override
    def tick(self, out: Emitter, now: int) -> None:
        """Once a minute, forget ids older than the window (tombstones keep the compacted topic small)."""
        if now < self._next_expiry or not self.seen:
            return
        self._next_expiry = now + 60_000
        for p, table in self.seen.items():
            for event_id in table.expire(now):
                out.send(self.ids_topic, event_id, None, None, partition=p)

    # -- one record ----------------------------------------------------------------------------------------

    # An urgent event's signals are sent at once; the rest of what it causes (its own runs, its dedup entry) is
    # waited for by nobody, so it commits with its batch (pipeline/kafka/loop.py).
    commit_urgent = False
    # Its starts go to run-commands, where the canceller's cancel commands land at once: produced only at the
    # commit, a burst's starts hide those commands for a commit's length, not a whole batch's (committing.py).
    defer_output = True

    @override
    def urgent(self, msg: Message) -> bool:
        """An event some function cancels on (or waits for): processed ahead of the backlog, so its signal is
        not queued behind a burst of other events (pipeline/kafka/lookahead.py). Everything it causes is
        idempotent if it is processed again in order after a crash (keyed records, run ids)."""
        self.applied.ready()
        value, p, offset = msg.value(), msg.partition(), msg.offset()
        if msg.topic() != self.events_topic or value is None or len(value) > self.max_bytes or p is None \
                or offset is None:
            return False
        record = read_event(self.serde, value, msg.timestamp()[1], self.confluent)
        self._decoded[(p, offset)] = record
        return record["name"] in self.routes

    @override
    def process(self, msg: Message, out: Emitter) -> None:
        self.applied.ready()
        value, topic, p, offset = msg.value(), msg.topic(), msg.partition(), msg.offset()
        if value is None:
            raise ValueError("empty record (tombstone) on an events topic")
        if topic is None or p is None or offset is None:
            raise ValueError("not a consumed record")
        if len(value) > self.max_bytes:
            raise OversizedRecord(f"event of {len(value)} bytes exceeds the {self.max_bytes}-byte limit")
        record = self._decoded.pop((p, offset), None) if topic == self.events_topic else None
        if record is None:
            record = read_event(self.serde, value, msg.timestamp()[1], self.confluent)
        name = record["name"]
        route = self.routes.get(name)
        if route is None and name not in DIRECTED and not self.triggers.has(name):
            return  # nobody listens: skip the JSON decode of data
        event = event_record_to_dict(record)
        if not isinstance(event["data"], dict) or not isinstance(event["user"], dict):
            raise InvalidEvent("event data and user must be JSON objects")
        received_at = msg.timestamp()[1]
        seen = None
        if not event["id"]:
            # Produced straight to Kafka without an id: derive one from where it sits in the log, so a
            # replay of the same record gets the same id (and so starts no second run).
            event["id"] = derived_ulid(received_at, topic, str(p), str(offset))
        elif self.dedup_window_ms and topic == self.events_topic:
            seen = self.seen.get(p)
            if seen is not None and seen.is_duplicate(event["id"], offset, received_at):
                self.duplicates += 1
                metrics.DUPLICATE_EVENTS.inc()
                return
        now = time.time_ns() // 1_000_000
        matched = self.triggers.matches(name, event) if name not in DIRECTED else self._directed(name, event)
        if not matched and route is None:
            return
        event_json = _event_json(record, event)
        if seen is not None and seen.remember(event["id"], offset, received_at):
            out.send(self.ids_topic, event["id"], EVENT_SEEN,
                     {"event_id": event["id"], "offset": offset, "first_seen": received_at}, partition=p)
        if matched:
            self._start(matched, event, event_json, received_at, now, out)
        if route is not None:
            for key in signal_keys(route, event):
                out.send(self.index_topic, signal_record_key(key, event["id"]), CANCEL_SIGNAL,
                         {"join_key": key, "event_id": event["id"], "received_at": received_at,
                          "event": event_json},
                         partition=partition_for(key, self.index_partitions), at_once=True)
                self.signals_sent += 1

    def _directed(self, name: str, event: dict[str, Any]) -> list[Any]:
        """``inngest/function.invoked`` (a step.invoke) starts the function it names, whatever its triggers;
        ``inngest/scheduled.timer`` (a cron tick) the cron function it names."""
        meta = event["data"].get("_inngest")
        fn_id = meta.get("fn_id") if isinstance(meta, dict) else None
        fn = self.functions_by_id.get(fn_id) if fn_id is not None else None
        if fn is None or (name == SCHEDULED_TIMER and not fn.crons):
            return []
        return [fn]

    def _start(self, matched: list[Any], event: dict[str, Any], event_json: str, received_at: int, now: int,
               out: Emitter) -> None:
        """Start a run of each matched function (its run id derived from function and event)."""
        starts = self.starts.event(event, event_json, received_at, now, self.command_partitions,
                                   self.index_partitions)
        commands, index, send, send_encoded = self.commands_topic, self.index_topic, out.send, out.send_encoded
        for role, key, schema, value, partition in starts.all_records(matched):
            topic = commands if role == "commands" else index
            if type(value) is bytes:  # the start command, encoded in pieces
                send_encoded(topic, key, value, partition)
            else:
                send(topic, key, schema, value, partition=partition)
        self.runs_started += len(matched)


def _event_json(record: dict[str, Any], event: dict[str, Any]) -> str:
    """The event as JSON text in Inngest's field order, built from the already-parsed parts."""
    # encode_basestring_ascii is what json.dumps does with a str (C), without dumps' per-call set-up
    parts = [f'"data":{record["data"] or "{}"}', f'"id":{encode_basestring_ascii(event["id"])}',
             f'"name":{encode_basestring_ascii(event["name"])}',
             f'"ts":{int(event["ts"])}', f'"user":{record["user"] or "{}"}']
    if event.get("v") is not None:
        parts.append(f'"v":{encode_basestring_ascii(event["v"])}')
    return "{" + ",".join(parts) + "}"
