"""The run owner's rate-limit and idempotency state of one partition, in a state store (:mod:`pipeline.kafka.store`).

Why a store of its own and not fields of runs: a dropped event has no run, and the state is per (function, key
value), shared by every event of that key. Its changelog is the compacted ``rate-limits`` topic, written in the
same transaction as the start command's offset, so after a SIGKILL the restored state is exactly what the
committed decisions left: an admit that committed is never forgotten, one that aborted is decided again (the
same way: the decision reads only the event's receive time and this state).

Keys: ``l<record key>`` → the ``FlowLimit`` record's Avro bytes (the changelog record's very bytes), and
``x<expires_at, 8 bytes><record key>`` so the sweep reads only the expired entries, oldest first.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message

from ..kafka.store import Store
from ..kafka.tables import StoredTable
from ..serde import FLOW_LIMIT, Serde

_LIMIT, _EXPIRY = b"l", b"x"


def _be(n: int) -> bytes:
    return max(n, 0).to_bytes(8, "big")


class LimitTable(StoredTable):
    """record key → FlowLimit state of one ``run-commands`` partition (see the module)."""

    def __init__(self, store: Store, serde: Serde) -> None:
        super().__init__(store)
        self.serde = serde

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.store.get(_LIMIT + key.encode())
        return None if raw is None else self.serde.decode_as(FLOW_LIMIT, raw)

    def raw(self, key: str) -> bytes | None:
        return self.store.get(_LIMIT + key.encode())

    def put_raw(self, key: str, value: bytes | None) -> None:
        """Set (None: remove) an entry from its record's bytes (a restore, an undo), and its place in the expiry
        index."""
        old = self.get(key)
        if value is None:
            self.put(key, None, 0, old)
        else:
            self.put(key, value, self.serde.decode_as(FLOW_LIMIT, value)["expires_at"], old)

    def put(self, key: str, value: bytes | None, expires_at: int, old: dict[str, Any] | None) -> None:
        """Set (None: remove) an entry whose current record is ``old`` (as :meth:`get` read it)."""
        k = key.encode()
        if old is not None:
            self.store.delete(_EXPIRY + _be(old["expires_at"]) + k)
        if value is None:
            if old is not None:
                self.store.delete(_LIMIT + k)
            return
        self.store.put(_LIMIT + k, value)
        self.store.put(_EXPIRY + _be(expires_at) + k, b"")

    def expired(self, before: int) -> list[str]:
        """Keys of the entries that expired before ``before`` (ms), oldest first."""
        return [k[9:].decode() for k, _ in self.store.scan(_EXPIRY, _EXPIRY + _be(before))]

    def load(self, msg: Message) -> None:
        """Apply one ``rate-limits`` record (a restore; idempotent)."""
        key = msg.key()
        if key is None:
            raise ValueError("rate-limits record without a key")
        self.put_raw(key.decode(), msg.value())
