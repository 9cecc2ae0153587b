"""Sources: records of a topic you already have, mapped to events (``client.create_source(...)``).

Kafka users have topics written by producers they will not change (a Java service, Kafka Connect, Debezium). A
source reads one of them and turns each record into an event on ``events``, as if it had been sent through the
API. The event's name, data and id are CEL over the record, so the mapping is data, checked when the app loads:

``record.key``, ``record.value`` (a JSON value, the text, or an Avro record in Confluent's wire format decoded
through ``PIPELINE_SCHEMA_REGISTRY_URL``, by ``value_format``), ``record.headers`` (a map of
text), ``record.topic``, ``record.partition``, ``record.offset`` and ``record.timestamp`` (the broker's, ms).

Without an ``id`` expression the event id is derived from the record's coordinates, so a replay of the source
topic starts nothing twice; with one, the id is what it gives (a business key, deduplicated like any event id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..expr import ExprError, ValueExpr, compile_expr

ValueFormat = Literal["auto", "json", "string", "avro"]
VALUE_FORMATS: tuple[ValueFormat, ...] = ("auto", "json", "string", "avro")
VARIABLES = ("record",)
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


class SourceError(ValueError):
    """A source definition that cannot work: the message names the source and the option."""


@dataclass(frozen=True)
class Source:
    """One topic mapped to events. ``name``, ``data``, ``id`` and ``if_exp`` are CEL over ``record``."""

    source_id: str
    topic: str
    name: str
    data: str = "record.value"
    id: str | None = None
    if_exp: str | None = None
    value_format: ValueFormat = "auto"

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.source_id or ""):
            raise SourceError(f"source id {self.source_id!r} must be a slug (letters, digits, '.', '_', '-')")
        if not self.topic.strip():
            raise SourceError(f"source {self.source_id}: topic must be a topic name")
        if self.value_format not in VALUE_FORMATS:
            raise SourceError(f"source {self.source_id}: value_format must be one of {', '.join(VALUE_FORMATS)}")
        for option in ("name", "data", "id", "if_exp"):
            text = getattr(self, option)
            if text is None:
                continue
            try:
                if option == "if_exp":
                    compile_expr(text, VARIABLES)
                else:
                    ValueExpr(text, VARIABLES, full=True)
            except ExprError as exc:
                raise SourceError(f"source {self.source_id}: {option}: {exc}") from None
