"""A source record -> the event it stands for (pure: no Kafka; the service feeds it consumed records).

The record is shown to CEL as ``record`` (see :mod:`pipeline.sdk.sources`). A mapping that fails (a missing
field, a name that is not text, data that is not an object) raises :class:`MappingError` with the CEL error, and
the service dead-letters that record; its neighbours go on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..expr import EvalFailure, Expr, ValueExpr, compile_expr
from ..protocol.ids import derived_ulid
from ..protocol.records import EventRecord
from ..sdk.sources import VARIABLES, Source
from ..serde.errors import SerdeError
from ..serde.events import ConfluentReader

_NAME_MAX = 512  # as POST /e


class MappingError(ValueError):
    """The record could not be mapped to an event; the message says which expression failed and why."""


@dataclass(frozen=True)
class RecordView:
    """What a source's expressions see of one consumed record."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None]


def decode_value(raw: bytes | None, value_format: str, confluent: ConfluentReader | None = None) -> Any:
    """``record.value``: the decoded Avro value (``avro``; ``auto`` when it is in Confluent's wire format and a
    registry is set), parsed JSON (``json``; ``auto`` when it parses), else the text (``string``)."""
    if raw is None:
        return None
    if value_format == "avro" or (value_format == "auto" and raw[:1] == b"\x00" and confluent is not None):
        if confluent is None:
            raise MappingError("record value is Avro in Confluent's wire format: set PIPELINE_SCHEMA_REGISTRY_URL")
        if raw[:1] != b"\x00" or len(raw) < 5:
            raise MappingError(f"record value is not in Confluent's wire format (00 + schema id): {raw[:8]!r}")
        try:
            return confluent(raw)
        except SerdeError as exc:
            raise MappingError(str(exc)) from None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise MappingError("record value is not UTF-8 text (Avro in Confluent's wire format needs "
                           "PIPELINE_SCHEMA_REGISTRY_URL)") from None
    if value_format == "string":
        return text
    try:
        return json.loads(text)
    except ValueError as exc:
        if value_format == "json":
            raise MappingError(f"record value is not JSON: {exc}") from None
        return text


class SourceMapping:
    """One source's compiled expressions."""

    def __init__(self, source: Source, confluent: ConfluentReader | None = None) -> None:
        self.source = source
        self.confluent = confluent
        self.name = ValueExpr(source.name, VARIABLES, full=True)
        self.data = ValueExpr(source.data, VARIABLES, full=True)
        self.id = ValueExpr(source.id, VARIABLES, full=True) if source.id is not None else None
        self.when: Expr | None = compile_expr(source.if_exp, VARIABLES) if source.if_exp is not None else None

    def activation(self, view: RecordView) -> dict[str, Any]:
        key = None if view.key is None else view.key.decode(errors="replace")
        pairs = view.headers.items() if isinstance(view.headers, Mapping) else view.headers
        headers = {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in pairs}
        return {"record": {"topic": view.topic, "partition": view.partition, "offset": view.offset,
                           "timestamp": view.timestamp, "key": key, "headers": headers,
                           "value": decode_value(view.value, self.source.value_format, self.confluent)}}

    def event(self, view: RecordView) -> EventRecord | None:
        """The event of ``view``, or None when the source's ``if`` does not hold for it."""
        activation = self.activation(view)
        if self.when is not None and not self.when.evaluate(activation):
            return None
        try:
            name = self.name.checked_value(activation)
            data = self.data.checked_value(activation)
            given = self.id.checked_value(activation) if self.id is not None else None
        except EvalFailure as exc:
            raise MappingError(f"source {self.source.source_id}: {exc}") from None
        sid = self.source.source_id
        if not isinstance(name, str) or not name.strip() or len(name) > _NAME_MAX:
            raise MappingError(f"source {sid}: name {self.source.name!r} gave {name!r}, not an event name")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise MappingError(f"source {sid}: data {self.source.data!r} gave a {type(data).__name__}, "
                               "not an object")
        if given is not None and (not isinstance(given, str | int) or isinstance(given, bool) or given == ""):
            raise MappingError(f"source {sid}: id {self.source.id!r} gave {given!r}, not a text or number")
        event_id = str(given) if given is not None else derived_ulid(
            view.timestamp, "source", sid, view.topic, str(view.partition), str(view.offset))
        try:
            data_json = json.dumps(data, separators=(",", ":"), default=_not_json)
        except TypeError as exc:
            raise MappingError(f"source {sid}: data is not JSON: {exc}") from None
        return {"id": event_id, "name": name, "data": data_json, "user": "{}", "ts": view.timestamp, "v": None}


def _not_json(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON")
