"""Pending debounces and batches in the run owner: events that wait, per (function, key), to become one run.

Why here: the owner already owns timers, the watermark gate, state stores and transactions, and the matcher
sends every start command of a function with ``debounce`` or ``batch_events`` to the owner partition of its key
(``Function.owner_key``), so all the events of one key meet at one owner, which decides for them alone.

* A start command of such a function does not start a run: :meth:`PendingRuns.on_start` applies the pure rules
  (:mod:`.debounce`, :mod:`.batches`) to the key's pending record and writes it to its table, a state store whose
  changelog is the compacted ``debounces`` / ``batches`` topic, in the same transaction as the command's offset.
  A SIGKILL therefore loses or repeats nothing: the next owner restores the records and goes on.
* Deadlines (a debounce's, a batch's timeout) are in an in-memory heap rebuilt from the tables on assignment.
  A due record first passes the watermark gate at its deadline, like a sleep: a start command for an event
  received before the deadline but still on its way through the matcher lands before the record is released,
  and extends the debounce or joins the batch. Then the run starts with the record's start command (a batch's
  first, with every event in the run's ``batch``), through the owner's own start path.
* A full batch starts at once. A REST cancel of the pending run id drops the record (a pending debounce or
  batch is not a run yet: nothing else to undo).

Every in-memory change logs its inverse in the owner's undo log, and store writes keep the old value there, so a
record that fails is undone whole before it is dead-lettered.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

from ..kafka import topics as t
from ..kafka.emitter import Emitter
from ..kafka.store import Store
from ..kafka.tables import StoredTable, StoredTables
from ..protocol.pending import PendingRecord, decode_pending, encode_pending, pending_key
from ..sdk.function import Function
from ..sdk.pending import BATCH_BYTES_SHARE, key_value
from .batches import batch_add
from .debounce import debounce_add

if TYPE_CHECKING:
    from .owner import RunOwner

log = logging.getLogger("pipeline.run-owner")

GATE_PREFIX = "\x00pending\x1f"  # a gate entry that is a pending record, not a run: GATE_PREFIX kind US key
_KEY, _RUN = b"k", b"r"
DUE_SOON_MS = 150  # more than the loop's poll timeout (100 ms)


class PendingTable(StoredTable):
    """One partition's pending records (``k<key>`` -> JSON) and the run id each will start (``r<run id>`` -> key),
    so that a cancel by run id finds its record.

    A batch's record grows by one event per start command; encoding and writing it each time would cost its size
    per event (quadratic in the batch). So changes stay decoded in memory (``_live``) until the end of the
    transaction's batch, when :meth:`flush` encodes each changed record once, for the store and the changelog."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._live: dict[str, PendingRecord | None] = {}  # changed since the last flush (None: removed)
        self._runs: dict[str, str | None] = {}  # the run index's changes since the last flush

    def get(self, key: str) -> PendingRecord | None:
        if key in self._live:
            return self._live[key]
        raw = self.store.get(_KEY + key.encode())
        return None if raw is None else decode_pending(raw)

    def key_of_run(self, run_id: str) -> str | None:
        if run_id in self._runs:
            return self._runs[run_id]
        raw = self.store.get(_RUN + run_id.encode())
        return None if raw is None else raw.decode()

    def put(self, key: str, record: PendingRecord | None) -> None:
        """Change a record (in memory until :meth:`flush`)."""
        old = self.get(key)
        if old is not None and (record is None or old["run_id"] != record["run_id"]):
            self._runs[old["run_id"]] = None
        if record is not None:
            self._runs[record["run_id"]] = key
        self._live[key] = record

    def flush(self) -> list[tuple[str, bytes | None]]:
        """Write the records changed since the last flush to the store's open writes; their changelog records."""
        out: list[tuple[str, bytes | None]] = []
        store = self.store
        for run_id, key in self._runs.items():
            if key is None:
                store.delete(_RUN + run_id.encode())
            else:
                store.put(_RUN + run_id.encode(), key.encode())
        for key, record in self._live.items():
            payload = None if record is None else encode_pending(record)
            if payload is None:
                store.delete(_KEY + key.encode())
            else:
                store.put(_KEY + key.encode(), payload)
            out.append((key, payload))
        self._live.clear()
        self._runs.clear()
        return out

    def records(self) -> Iterator[tuple[str, PendingRecord]]:
        live = self._live
        for raw_key, raw in self.store.scan(_KEY, _KEY + b"\xff"):
            key = raw_key[1:].decode()
            if key not in live:
                yield key, decode_pending(raw)
        for key, record in list(live.items()):
            if record is not None:
                yield key, record

    def load(self, msg: Message) -> None:
        """Apply one changelog record (a restore: straight to the store's writes)."""
        key = msg.key()
        if key is None:
            raise ValueError("a pending record without a key")
        value = msg.value()
        self.put(bytes(key).decode(), None if value is None else decode_pending(value))
        self.flush()

    def abort(self) -> None:
        super().abort()
        self._live.clear()
        self._runs.clear()

    def close(self) -> None:
        self._live.clear()
        self._runs.clear()
        super().close()


def _commands(record: PendingRecord | None) -> dict[str, dict[str, Any]]:
    """The start commands a record will still run (its own and those waiting for the next one), by run id."""
    if record is None:
        return {}
    return {c["run_id"]: c for c in (*record["commands"], *record["later"])}


Due = tuple[int, str, str, int]  # (deadline, kind, key, partition)


class PendingRuns:
    """The owner's pending debounces and batches (see the module)."""

    def __init__(self, owner: RunOwner) -> None:
        self.owner = owner
        settings = owner.settings
        commands = owner.commands_topic
        self.topics: dict[str, str] = {"debounce": settings.topic(t.DEBOUNCES), "batch": settings.topic(t.BATCHES)}
        self.tables: dict[str, StoredTables[PendingTable]] = {
            kind: StoredTables(commands, PendingTable, changelog=topic, label=f"run-owner pending {kind}es")
            for kind, topic in self.topics.items()}
        self.heap: list[Due] = []
        # (partition, kind, key) -> the deadline of its live heap entry: one per record, however many events moved
        # its deadline (an entry for an extended deadline is re-armed when it pops), so the heap holds one entry
        # per waiting key, not one per event
        self.armed: dict[tuple[int, str, str], int] = {}
        self.at_gate: dict[tuple[int, str, str], int] = {}  # (partition, kind, key) -> the deadline at the gate
        self.max_batch_bytes = int(settings.max_output_bytes * BATCH_BYTES_SHARE)

    # -- rebalances ----------------------------------------------------------------------------------------

    def assigned(self, parts: list[int]) -> None:
        """Re-arm the deadlines of the assigned partitions' records (not undoable: outside any record)."""
        self.revoked(parts)
        for kind, tables in self.tables.items():
            for p in parts:
                table = tables.get(p)
                if table is not None:
                    for key, rec in table.records():
                        self.heap.append((rec["deadline_at"], kind, key, p))
                        self.armed[(p, kind, key)] = rec["deadline_at"]
        heapq.heapify(self.heap)

    def revoked(self, parts: list[int]) -> None:
        gone = set(parts)
        self.heap = [d for d in self.heap if d[3] not in gone]
        heapq.heapify(self.heap)
        self.at_gate = {k: v for k, v in self.at_gate.items() if k[0] not in gone}
        self.armed = {k: v for k, v in self.armed.items() if k[0] not in gone}

    # -- input -----------------------------------------------------------------------------------------------

    def on_start(self, cmd: dict[str, Any], fn: Function, p: int, out: Emitter, now: int) -> bool:
        """Take a start command of a debounced or batched function (True); False: start the run as usual.
        A replay (``pipeline replay runs``, ``POST /v1/runs/{id}/replay``: ``source_id`` set) starts at once."""
        if cmd.get("source_id"):
            return False
        if fn.debounce is not None:
            d = fn.debounce
            key = key_value(d.key, json.loads(cmd["event"]))
            table_key = pending_key(fn.id, key)
            old = self._get("debounce", p, table_key)
            new = debounce_add(old, cmd, key, d.period_ms, d.timeout_ms, now)
            if new is not None:
                self._put("debounce", p, table_key, new)
            if fn.cancels:  # the cancel listeners of an event that will never run are tombstoned
                alive = _commands(new or old)
                self._unlisten(fn, [c for c in [*_commands(old).values(), cmd] if c["run_id"] not in alive], out, now)
            return True
        if fn.batch is not None:
            b = fn.batch
            event = json.loads(cmd["event"])
            if not b.batches(event):
                return False  # its ``if`` is false: it runs alone, at once
            key = key_value(b.key, event)
            table_key = pending_key(fn.id, key)
            kept, started = batch_add(self._get("batch", p, table_key), cmd, key, b.max_size, b.timeout_ms,
                                      self.max_batch_bytes, now)
            if kept is not None:
                self._put("batch", p, table_key, kept)
            elif started:
                self._put("batch", p, table_key, None)
            for record in started:
                self._fire("batch", p, record, fn, out, now)
            return True
        return False

    def cancel(self, run_id: str, p: int, out: Emitter) -> bool:
        """Drop the pending record that would start ``run_id`` (True), if partition p has one."""
        for kind, tables in self.tables.items():
            table = tables.get(p)
            key = table.key_of_run(run_id) if table is not None else None
            if key is not None:
                log.info("pending %s cancelled", kind, extra={"run_id": run_id, "key": key})
                record = table.get(key) if table is not None else None
                fn = self.owner.registry.by_id.get(record["function_id"]) if record is not None else None
                if fn is not None and fn.cancels:
                    self._unlisten(fn, list(_commands(record).values()), out, self.owner_now())
                self._put(kind, p, key, None)
                return True
        return False

    def bulk_cancel(self, hits: Callable[[dict[str, Any]], bool], out: Emitter) -> None:
        """Drop the pending records a bulk cancellation covers: seen as a Queued run of their first start command,
        queued when their first event was received (``hits`` is the rule's test of a run state)."""
        for tables in self.tables.values():
            for p, table in tables.items():
                for _, record in list(table.records()):
                    first = record["commands"][0]
                    seen = {"function_id": record["function_id"], "status": "Queued", "started_at": None,
                            "queued_at": record["first_received_at"], "event": first["event"]}
                    if hits(seen):
                        self.cancel(record["run_id"], p, out)

    # -- time --------------------------------------------------------------------------------------------------

    def due_soon(self, now: int, within_ms: int = DUE_SOON_MS) -> bool:
        """A deadline is near: the owner's loop then ticks every few ms instead of at its poll timeout, so a
        debounce starts within milliseconds of its deadline rather than up to a poll later."""
        heap = self.heap
        return bool(heap) and heap[0][0] <= now + within_ms

    def tick(self, out: Emitter, now: int) -> None:
        """Records whose deadline passed go to the watermark gate (or start at once with the gate off)."""
        undo = self.owner.undo
        heap = self.heap
        while heap and heap[0][0] <= now:
            due = heapq.heappop(heap)
            undo.add(heapq.heappush, heap, due)
            at, kind, key, p = due
            k = (p, kind, key)
            if self.armed.get(k) != at:
                continue  # stale: the key's live entry is another one
            self._assign(self.armed, k, None)
            record = self._get(kind, p, key)
            if record is None:
                continue  # started or cancelled
            if record["deadline_at"] > at:  # extended since it was armed: wait for the new deadline
                self._arm(k, record["deadline_at"])
                continue
            if self.owner.settings.gate_max_wait_ms > 0:
                self._set_gate((p, kind, key), at)
                self.owner.gates.add(p, at, f"{GATE_PREFIX}{kind}\x1f{key}")
            else:
                self._due(kind, p, key, record, out, now)

    def release(self, p: int, gate_id: str, out: Emitter, now: int) -> None:
        """The gate passed a record's deadline: every start command received before it has been applied."""
        kind, key = gate_id[len(GATE_PREFIX):].split("\x1f", 1)
        at = self.at_gate.get((p, kind, key))
        record = self._get(kind, p, key)
        self._set_gate((p, kind, key), None)
        if record is None or at is None or record["deadline_at"] != at:
            return  # extended meanwhile (its new deadline is armed), cancelled, or revoked
        self._due(kind, p, key, record, out, now)

    def _due(self, kind: str, p: int, key: str, record: PendingRecord, out: Emitter, now: int) -> None:
        fn = self.owner.registry.by_id.get(record["function_id"])
        if fn is None:
            log.warning("pending %s of a function no longer served: dropped", kind,
                        extra={"function_id": record["function_id"], "key": key})
            self._put(kind, p, key, None)
            return
        self._put(kind, p, key, None)
        self._fire(kind, p, record, fn, out, now)

    # -- effects -----------------------------------------------------------------------------------------------

    def _fire(self, kind: str, p: int, record: PendingRecord, fn: Function, out: Emitter, now: int) -> None:
        """Start the record's run (the caller took it out of the table); the commands received after its
        deadline begin the key's next record."""
        commands = record["commands"]
        batch = json.dumps([json.loads(c["event"]) for c in commands]) if kind == "batch" else None
        self.owner.start_run(commands[0], fn, p, out, now, batch=batch)
        for cmd in record["later"]:
            self.on_start(cmd, fn, p, out, now)

    def flush(self, out: Emitter) -> None:
        """The end of the loop's batch: each record changed in it is encoded and written once."""
        for kind, tables in self.tables.items():
            for p, table in tables.items():
                for key, payload in table.flush():
                    out.send(self.topics[kind], key, None, payload, partition=p)

    def _unlisten(self, fn: Function, commands: list[dict[str, Any]], out: Emitter, now: int) -> None:
        for cmd in commands:
            self.owner.listening.unlisten_cancels(fn, {"run_id": cmd["run_id"], "event": cmd["event"],
                                                      "received_at": cmd["received_at"], "queued_at": now}, out)

    @staticmethod
    def owner_now() -> int:
        return time.time_ns() // 1_000_000

    def _get(self, kind: str, p: int, key: str) -> PendingRecord | None:
        table = self.tables[kind].get(p)
        return None if table is None else table.get(key)

    def _put(self, kind: str, p: int, key: str, record: PendingRecord | None) -> None:
        table = self.tables[kind][p]
        old = table.get(key)
        self.owner.undo.add(table.put, key, old)
        table.put(key, record)
        if record is None or old is None or old["deadline_at"] != record["deadline_at"]:
            self._set_gate((p, kind, key), None)  # a gate entry for the old deadline is now stale
            armed = self.armed.get((p, kind, key))
            if record is not None and (armed is None or record["deadline_at"] < armed):
                self._arm((p, kind, key), record["deadline_at"])

    def _arm(self, k: tuple[int, str, str], at: int) -> None:
        """A heap entry at ``at`` for the key (an entry pushed by a record that fails is skipped as stale)."""
        heapq.heappush(self.heap, (at, k[1], k[2], k[0]))
        self._assign(self.armed, k, at)

    def _set_gate(self, k: tuple[int, str, str], at: int | None) -> None:
        self._assign(self.at_gate, k, at)

    def _assign(self, mapping: dict[tuple[int, str, str], int], k: tuple[int, str, str], value: int | None) -> None:
        """Set (None: remove) an entry of ``armed`` or ``at_gate``, undoably."""
        old = mapping.get(k)
        if old == value:
            return
        if value is None:
            del mapping[k]
        else:
            mapping[k] = value
        self.owner.undo.add(self._restore, mapping, k, old)

    @staticmethod
    def _restore(mapping: dict[tuple[int, str, str], int], k: tuple[int, str, str], value: int | None) -> None:
        if value is None:
            mapping.pop(k, None)
        else:
            mapping[k] = value

    def listing(self) -> Iterator[tuple[int, PendingRecord]]:
        """Every pending record of the assigned partitions (for logs and tests)."""
        for tables in self.tables.values():
            for p, table in tables.items():
                for _, record in table.records():
                    yield p, record
