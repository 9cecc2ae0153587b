"""Bulk cancellations as the run owner sees them: compiled rules read whole from their compacted topic.

Every owner reads the one-partition ``cancellations`` topic in full (at assignment, then new
records on every tick) and applies each rule to its own partitions' runs; applying a rule is
idempotent, so re-applying them all after a rebuild is safe.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from ..expr import ExprError, compile_expr
from ..kafka.client import consumer_config
from ..protocol.ids import function_id
from ..serde import BULK_CANCELLATION, Serde
from . import state as st

log = logging.getLogger("pipeline.run-owner")


class BulkRule:
    """A bulk cancellation, compiled: which runs (function, start window, ``if``) it cancels."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.id: str = record["id"]
        fid = record["function_id"]
        app = record["app_id"]
        self.function_id = fid if fid.startswith(f"{app}-") else function_id(app, fid)
        self.after: int | None = record.get("started_after")
        self.before: int = record["started_before"]
        self.stopped = record.get("stopped_at") is not None
        self.expr = None
        if record.get("if_exp"):
            try:
                self.expr = compile_expr(record["if_exp"], ("event",))
            except ExprError:
                self.stopped = True  # the API refuses these; a hand-written bad one cancels nothing

    def hits(self, state: dict[str, Any]) -> bool:
        if self.stopped or state["function_id"] != self.function_id or st.is_ended(state):
            return False
        started = state.get("started_at") or state["queued_at"]
        if started > self.before or (self.after is not None and started < self.after):
            return False
        return self.expr is None or self.expr.evaluate({"event": json.loads(state["event"])})


class BulkRules:
    """The live rules, kept current from the ``cancellations`` topic."""

    def __init__(self, servers: str, topic: str, serde: Serde) -> None:
        self.servers = servers
        self.topic = topic
        self.serde = serde
        self.rules: dict[str, BulkRule] = {}
        self._consumer: Consumer | None = None

    def load(self) -> None:
        """Read every rule so far (once, at the first assignment)."""
        if self._consumer is not None:
            return
        eof: dict[str, Any] = {"enable.partition.eof": True}
        consumer = Consumer(consumer_config(self.servers, None, **eof))
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        while True:
            msg = consumer.poll(5.0)
            if msg is None:
                break
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    break
                continue
            self._record(msg)
        self._consumer = consumer

    def poll(self) -> list[BulkRule]:
        """Rules that arrived since the last call (non-blocking)."""
        if self._consumer is None:
            return []
        fresh = []
        for msg in self._consumer.consume(100, timeout=0):
            if not msg.error():
                rule = self._record(msg)
                if rule is not None:
                    fresh.append(rule)
        return fresh

    def _record(self, msg: Message) -> BulkRule | None:
        value, key = msg.value(), msg.key()
        if value is None:  # a tombstone: the rule is withdrawn
            if key is not None:
                self.rules.pop(key.decode(), None)
            return None
        try:
            rule = BulkRule(self.serde.decode_as(BULK_CANCELLATION, value))
        except Exception:
            log.exception("bad bulk cancellation record skipped")
            return None
        self.rules[rule.id] = rule
        return rule

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
