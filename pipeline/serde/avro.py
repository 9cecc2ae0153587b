"""Avro single-object encoding (``C3 01`` + 8-byte fingerprint + Avro binary) with fastavro.

Readers resolve the writer's schema by fingerprint and decode into the current reader
schema, so old records stay readable after a schema evolves.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from .catalog import Catalog, SchemaEntry, default_catalog
from .errors import SerdeError

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class Serde:
    """Encode and decode records of the catalog's schemas. One instance per process is enough."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or default_catalog()

    def encode(self, schema_name: str, record: Mapping[str, Any]) -> bytes:
        """Encode a record with the current schema of ``schema_name``; a record that does not fit raises SerdeError."""
        entry = self.catalog.schema(schema_name)
        buf = BytesIO()
        buf.write(MAGIC)
        buf.write(entry.fingerprint)
        try:
            schemaless_writer(buf, entry.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerdeError(f"record does not fit schema {schema_name}: {exc}") from exc
        return buf.getvalue()

    def writer_entry(self, payload: bytes | None) -> SchemaEntry:
        """The schema a payload was written with, from its fingerprint header. ``None`` is accepted (it is what
        a Kafka message's value is for a tombstone) and refused like any other non-record, so callers can pass
        ``msg.value()`` straight in and a stray tombstone is dead-lettered with a reason."""
        if payload is None or len(payload) < HEADER_LEN or payload[:2] != MAGIC:
            raise SerdeError("not an Avro single-object encoded record (missing C3 01 header)")
        fp = payload[2:HEADER_LEN]
        entry = self.catalog.by_fingerprint.get(fp)
        if entry is None:
            raise SerdeError(f"unknown schema fingerprint {fp.hex()}")
        return entry

    def decode(self, payload: bytes | None) -> tuple[str, dict[str, Any]]:
        """Decode into the current reader schema of the writer's name. Returns (schema name, record)."""
        writer = self.writer_entry(payload)
        assert payload is not None  # writer_entry refused None
        reader = self.catalog.current.get(writer.name, writer)
        try:
            record = schemaless_reader(
                BytesIO(payload[HEADER_LEN:]),
                writer.parsed,
                reader.parsed if reader is not writer else None,
            )
        except Exception as exc:  # fastavro raises many types on corrupt bodies
            raise SerdeError(f"cannot decode {writer.name} body: {exc}") from exc
        if not isinstance(record, dict):  # every schema in the catalog is a record type
            raise SerdeError(f"{writer.name} is not a record schema")
        return writer.name, record

    def decode_as(self, schema_name: str, payload: bytes | None) -> dict[str, Any]:
        """Decode and insist on one record type, so a service never acts on a record meant for another."""
        name, record = self.decode(payload)
        if name != schema_name:
            raise SerdeError(f"expected a {schema_name} record, got {name}")
        return record
