"""The matcher: events and system events in; run starts, cancel listeners and cancel signals out.

For each event it (1) starts every function whose trigger matches, with a run id derived
from (function id, event id) so duplicates and replays start nothing new; (2) registers the
new run's cancel listeners, keyed and partitioned by join key; (3) if the event's name is a
cancel event of any function, emits a cancel signal under each join key it can hit.
Everything one event causes commits in one transaction with its offset.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from ..canceller.keys import listener_record_key, partition_for, signal_record_key
from ..canceller.registration import listeners_for, signal_keys, signal_routes
from ..config import Settings
from ..kafka import topics as t
from ..kafka.client import admin_config, bootstrap
from ..kafka.loop import Emitter
from ..runs.ids import derived_ulid, run_id_for
from ..runs.state import start_command
from ..sdk.app import Registry
from ..serde import CANCEL_LISTENER, CANCEL_SIGNAL, EVENT, RUN_COMMAND, Serde
from ..serde.models import event_record_to_dict
from .routing import TriggerIndex

log = logging.getLogger("pipeline.matcher")


class OversizedRecord(ValueError):
    """A record larger than ``PIPELINE_MAX_EVENT_BYTES``: dead-lettered, never processed."""


class InvalidEvent(ValueError):
    """A decodable event that breaks the envelope's rules (dead-lettered with the reason)."""


class Matcher:
    """The matcher processor for :class:`pipeline.kafka.loop.ServiceLoop`."""

    name = "matcher"

    def __init__(self, registry: Registry, settings: Settings, serde: Serde | None = None) -> None:
        self.settings = settings
        self.serde = serde or Serde()
        self.triggers = TriggerIndex(registry.functions)
        self.routes = signal_routes(registry.functions)
        self.events_topic = settings.topic(t.EVENTS)
        self.system_topic = settings.topic(t.SYSTEM_EVENTS)
        self.commands_topic = settings.topic(t.RUN_COMMANDS)
        self.index_topic = settings.topic(t.CANCEL_INDEX)
        admin = AdminClient(admin_config(bootstrap(settings)))
        self.index_partitions = t.partition_count(admin, self.index_topic)
        self.command_partitions = t.partition_count(admin, self.commands_topic)
        self.max_bytes = settings.max_event_bytes
        self.runs_started = 0
        self.signals_sent = 0

    def topics(self) -> list[str]:
        return [self.events_topic, self.system_topic]

    def process(self, msg: Message, out: Emitter) -> None:
        value = msg.value()
        if value is None:
            raise ValueError("empty record (tombstone) on an events topic")
        if len(value) > self.max_bytes:
            raise OversizedRecord(f"event of {len(value)} bytes exceeds the {self.max_bytes}-byte limit")
        record = self.serde.decode_as(EVENT, value)
        name = record["name"]
        route = self.routes.get(name)
        if route is None and not self.triggers.has(name):
            return  # nobody listens: skip the JSON decode of data
        event = event_record_to_dict(record)
        if not isinstance(event["data"], dict) or not isinstance(event["user"], dict):
            raise InvalidEvent("event data and user must be JSON objects")
        received_at = msg.timestamp()[1]
        if not event["id"]:
            # Produced straight to Kafka without an id: derive one from where it sits in the log, so a
            # replay of the same record gets the same id (and so starts no second run).
            event["id"] = derived_ulid(received_at, msg.topic(), str(msg.partition()), str(msg.offset()))
        now = time.time_ns() // 1_000_000
        matched = self.triggers.matches(name, event)
        event_json = _event_json(record, event) if matched or route is not None else ""
        for fn in matched:
            self._start(fn, event, event_json, received_at, now, out)
        if route is not None:
            for key in signal_keys(route, event):
                out.send(self.index_topic, signal_record_key(key, event["id"]), CANCEL_SIGNAL,
                         {"join_key": key, "event_id": event["id"], "received_at": received_at,
                          "event": event_json},
                         partition=partition_for(key, self.index_partitions))
                self.signals_sent += 1

    def _start(self, fn: Any, event: dict[str, Any], event_json: str, received_at: int, now: int,
               out: Emitter) -> None:
        run_id = run_id_for(fn.id, event["id"], event["ts"])
        # Runs that share concurrency slots meet at one owner partition; others go by run id.
        owner_key = fn.owner_key(event)
        owner = partition_for(owner_key, self.command_partitions) if owner_key is not None else -1
        out.send(self.commands_topic, run_id, RUN_COMMAND, start_command(run_id, fn.id, event_json, received_at, now),
                 partition=owner)
        for listener in listeners_for(fn, event, run_id, received_at, now):
            listener["owner_partition"] = owner
            key = listener["join_key"]
            out.send(self.index_topic, listener_record_key(key, run_id), CANCEL_LISTENER, listener,
                     partition=partition_for(key, self.index_partitions))
        self.runs_started += 1


def _event_json(record: dict[str, Any], event: dict[str, Any]) -> str:
    """The event as JSON text in Inngest's field order, built from the already-parsed parts."""
    parts = [f'"data":{record["data"] or "{}"}', f'"id":{json.dumps(event["id"])}', f'"name":{json.dumps(event["name"])}',
             f'"ts":{int(event["ts"])}', f'"user":{record["user"] or "{}"}']
    if event.get("v") is not None:
        parts.append(f'"v":{json.dumps(event["v"])}')
    return "{" + ",".join(parts) + "}"
