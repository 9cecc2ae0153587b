"""Avro single-object encoding (``C3 01`` + 8-byte fingerprint + Avro binary).

Readers resolve the writer's schema by fingerprint and decode into the current reader
schema, so old records stay readable after a schema evolves. Records of the current schemas are encoded and
decoded by codecs compiled once per schema (:mod:`.compiled`, the same bytes at a third of the cost); schema
resolution of an older writer, and any schema the compiler does not cover, go through fastavro.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from .catalog import Catalog, SchemaEntry, default_catalog
from .compiled import Decoder, Encoder, compile_encoder, compile_fields_encoder
from .decoders import compile_decoder, compile_projection
from .errors import SerdeError

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class Serde:
    """Encode and decode records of the catalog's schemas. One instance per process is enough."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or default_catalog()
        # by schema name: (header, compiled encoder or None), and by fingerprint the compiled decoder of a
        # current schema (None: fastavro); filled on first use
        self._encoders: dict[str, tuple[bytes, Encoder | None]] = {}
        self._decoders: dict[bytes, Decoder | None] = {}
        self._projections: dict[tuple[bytes, tuple[str, ...]], Decoder | None] = {}
        self._parts: dict[str, Encoder] = {}  # fields_encoder's, by schema name and fields

    def encode(self, schema_name: str, record: Mapping[str, Any]) -> bytes:
        """Encode a record with the current schema of ``schema_name``; a record that does not fit raises SerdeError."""
        compiled = self._encoders.get(schema_name)
        if compiled is None:
            entry = self.catalog.schema(schema_name)
            compiled = self._encoders[schema_name] = (MAGIC + entry.fingerprint, compile_encoder(entry.parsed))
        header, encoder = compiled
        if encoder is not None:
            try:
                return header + encoder(record)
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
                raise SerdeError(f"record does not fit schema {schema_name}: {exc!r}") from exc
        entry = self.catalog.schema(schema_name)
        buf = BytesIO()
        buf.write(MAGIC)
        buf.write(entry.fingerprint)
        try:
            schemaless_writer(buf, entry.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerdeError(f"record does not fit schema {schema_name}: {exc}") from exc
        return buf.getvalue()

    def header(self, schema_name: str) -> bytes:
        """The single-object header (``C3 01`` + fingerprint) of records of the current ``schema_name``."""
        return MAGIC + self.catalog.schema(schema_name).fingerprint

    def fields_encoder(self, schema_name: str, first: str, last: str | None = None) -> Encoder:
        """An encoder of the fields ``first`` to ``last`` (None: to the last one) of the current ``schema_name``,
        alone (:func:`.compiled.compile_fields_encoder`): ``header`` + the encodings of all the fields in order is
        exactly what :meth:`encode` writes. For records built by the thousand that share most of their fields
        (the matcher's start commands). The encoder raises ``ValueError``, ``TypeError``, ``KeyError`` or
        ``AttributeError`` on values that do not fit; a schema the compiler does not cover raises SerdeError here."""
        key = f"{schema_name}[{first}:{last or ''}]"
        encoder = self._parts.get(key)
        if encoder is None:
            try:
                encoder = compile_fields_encoder(self.catalog.schema(schema_name).parsed, first, last)
            except ValueError as exc:
                raise SerdeError(str(exc)) from exc
            if encoder is None:
                raise SerdeError(f"fields {first}..{last} of {schema_name} cannot be encoded apart")
            self._parts[key] = encoder
        return encoder

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
        if reader is writer:
            fp = writer.fingerprint
            if fp in self._decoders:
                decoder = self._decoders[fp]
            else:
                decoder = self._decoders[fp] = compile_decoder(writer.parsed)
            if decoder is not None:
                try:
                    decoded, _ = decoder(payload, HEADER_LEN)
                except Exception as exc:  # a corrupt body: any of IndexError, ValueError, UnicodeDecodeError
                    raise SerdeError(f"cannot decode {writer.name} body: {exc!r}") from exc
                return writer.name, decoded
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

    def decode_fields(self, schema_name: str, payload: bytes | None, fields: tuple[str, ...]) -> dict[str, Any]:
        """The named top-level ``fields`` of a ``schema_name`` record (a field the record's schema lacks is left
        out), checked as :meth:`decode_as` checks the whole record but without building the other fields: a
        reader that needs a few fields of a big record pays for those. Records of an older writer schema are
        decoded in full (schema resolution) and the fields taken from that."""
        writer = self.writer_entry(payload)
        assert payload is not None  # writer_entry refused None
        if writer.name != schema_name:
            raise SerdeError(f"expected a {schema_name} record, got {writer.name}")
        if self.catalog.current.get(writer.name) is writer:
            key = (writer.fingerprint, fields)
            if key in self._projections:
                project = self._projections[key]
            else:
                project = self._projections[key] = compile_projection(writer.parsed, fields)
            if project is not None:
                try:
                    out, _ = project(payload, HEADER_LEN)
                except Exception as exc:  # a corrupt body, as in decode
                    raise SerdeError(f"cannot decode {writer.name} body: {exc!r}") from exc
                return out
        record = self.decode_as(schema_name, payload)
        return {k: record[k] for k in fields if k in record}
