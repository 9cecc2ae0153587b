"""Avro records in Confluent's wire format (``00`` + a 4-byte schema id + the Avro body), decoded through a
Confluent-compatible Schema Registry (``PIPELINE_SCHEMA_REGISTRY_URL``) with confluent-kafka's own client.

Why confluent-kafka's client and deserializer: they are what the producers on the other side use (Java, Go and
Node's serializers write the same framing), they cache each schema by id after its first fetch, and they follow
the registry's API as it evolves (auth, several URLs, schema references).

The two ways a decode can fail are kept apart, because they call for opposite actions:

* **the record is bad** (the registry answers that its schema id does not exist, or the body does not match its
  schema): :class:`SerdeError`, which the services dead-letter with the reason;
* **the registry cannot answer now** (connection refused, a timeout, a 5xx, an auth error): the record may well
  be good, so it must not be dead-lettered. A :class:`ConfluentAvro` made with ``wait_s=None`` (the services')
  retries until the registry answers, with a capped backoff, and so holds the service (one loop) in order; an outage
  longer than ``PIPELINE_STALL_TIMEOUT_MS`` makes ``pipeline run`` exit (code 70) and restart from the committed
  offsets, which loses nothing either. With a bound (the API's and tools' readers) it raises
  :class:`RegistryUnavailable` after that long, which is not a :class:`SerdeError`, so no caller files the record
  as garbage.

Avro values that JSON has no type for are given as Avro's own JSON encoding does for bytes (each byte one code
point, 0-255); timestamps, dates and times as ISO 8601 text, decimals and UUIDs as text, so the decoded record
can be an event's data or a CEL value.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

from ..config import Settings
from .errors import SerdeError

log = logging.getLogger(__name__)

__all__ = ["TOOL_WAIT_S", "ConfluentAvro", "RegistryUnavailable", "confluent_reader", "schema_id"]

#: How long the API's and the command-line tools' readers wait for a registry that does not answer, per record.
TOOL_WAIT_S = 10.0

_NOT_FOUND = 404
_BACKOFF_START_S = 0.1
_BACKOFF_MAX_S = 5.0


class RegistryUnavailable(ConnectionError):
    """The registry did not answer (or refused us); the record was not judged. Retry later, never dead-letter."""


def schema_id(payload: bytes) -> int:
    """The schema id of a record in Confluent's wire format."""
    return int.from_bytes(payload[1:5], "big")


class ConfluentAvro:
    """A :data:`pipeline.serde.events.ConfluentReader`: payload in Confluent's wire format -> the decoded value.

    ``wait_s`` is how long one record may wait for an unreachable registry: ``None`` waits as long as it takes
    (a service, which must not skip a record), a number raises :class:`RegistryUnavailable` after that long.
    """

    def __init__(self, url: str, *, wait_s: float | None = None, timeout_s: float = 5.0,
                 client: SchemaRegistryClient | None = None) -> None:
        self.url = url
        self.wait_s = wait_s
        # The client's own retries are off: this class retries with a cap it controls, and tells a 404 apart.
        # Imported here: the Schema Registry client costs ~0.3 s to import, which a service without a registry
        # (most) should not pay at start.
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

        self.client = client or SchemaRegistryClient({"url": url, "timeout": timeout_s, "max.retries": 0})
        self._deserializer = AvroDeserializer(self.client)
        self._context = SerializationContext("", MessageField.VALUE)
        self._registry_error = SchemaRegistryError
        self._transport_errors = _transport_errors()
        self._body_errors = (SerializationError, EOFError, ValueError, TypeError, IndexError, KeyError)
        self.waits = 0  # times a record waited for the registry (tests, metrics)

    def __call__(self, payload: bytes) -> Any:
        if len(payload) < 5 or payload[:1] != b"\x00":
            raise SerdeError(f"not Confluent's wire format (00 + 4-byte schema id): {payload[:8]!r}")
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        pause = _BACKOFF_START_S
        while True:
            try:
                return jsonable(self._decode(payload))
            except RegistryUnavailable as exc:
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise
                self.waits += 1
                log.warning("schema registry unavailable; the record waits", extra={
                    "registry": self.url, "schema_id": schema_id(payload), "error": str(exc), "retry_in_s": pause})
                time.sleep(pause)
                pause = min(pause * 2, _BACKOFF_MAX_S)

    def _decode(self, payload: bytes) -> Any:
        sid = schema_id(payload)
        try:
            return self._deserializer(payload, self._context)
        except self._registry_error as exc:
            if exc.http_status_code == _NOT_FOUND:
                raise SerdeError(f"schema id {sid} is not in the schema registry ({self.url}): "
                                 f"{exc.error_message}") from None
            raise RegistryUnavailable(f"schema registry {self.url} answered {exc}") from None
        except self._transport_errors as exc:
            raise RegistryUnavailable(f"schema registry {self.url} unreachable: {exc!r}") from None
        except self._body_errors as exc:
            raise SerdeError(f"Confluent Avro record (schema id {sid}) does not decode with its schema: "
                             f"{exc}") from None


def _transport_errors() -> tuple[type[Exception], ...]:
    """The errors of a request that got no answer (refused, reset, timed out, DNS), from the HTTP library the
    registry client runs on: confluent-kafka picks httpx2 or httpx (its ``_httpx_compat``)."""
    import httpx

    errors: list[type[Exception]] = [httpx.TransportError]
    try:
        from confluent_kafka.schema_registry.common._httpx_compat import httpx as client_httpx
    except ImportError:  # an older confluent-kafka: it uses httpx itself
        return tuple(errors)
    errors.append(client_httpx.TransportError)
    return tuple(errors)


def confluent_reader(settings: Settings, *, wait_s: float | None = None) -> ConfluentAvro | None:
    """The reader for ``settings``' registry, or None when ``PIPELINE_SCHEMA_REGISTRY_URL`` is not set."""
    if not settings.schema_registry_url:
        return None
    return ConfluentAvro(settings.schema_registry_url, wait_s=wait_s)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """An Avro-decoded value with only JSON's types (see the module's docstring for the mapping). Exact type
    checks first: every record goes through this, and most of its values are already plain."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [v if type(v) in _PLAIN else jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):  # a dict subclass
        return jsonable(dict(value))
    raise SerdeError(f"a decoded Avro value of type {kind.__name__} has no JSON form")
