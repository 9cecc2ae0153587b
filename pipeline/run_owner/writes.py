"""The run owner's state writes: one record per run per batch, and an undo log for a dead-lettered record.

A run usually changes several times while one batch is processed (a start is queued and dispatched at
once; an outcome lands and the run finishes), and the compacted ``runs`` topic only needs the last of
them: every change of the batch commits in the same transaction, so no reader could have seen the ones
in between. Encoding a state is most of the owner's CPU (a ~30-field Avro record), so writing each run
once per batch instead of once per change cuts that work by a third and the topic's volume with it.

The table is still updated at once (the state machine reads it); the records are emitted by
:meth:`StateWrites.flush` at the end of the batch. If processing a record fails (it is dead-lettered
and its other output dropped), :meth:`StateWrites.discard` puts back the table entries it changed, so
memory does not run ahead of what is written.
"""

from __future__ import annotations

from typing import Any

from ..kafka.emitter import Emitter, OutputTooLarge
from ..serde import RUN_STATE
from .table import RunTable

_Key = tuple[int, str]


def rough_size(state: dict[str, Any]) -> int:
    """An upper-bound-ish size of a state's large fields, cheap to compute (no encoding)."""
    size = len(state["event"]) + len(state.get("output") or "") + len(state.get("error") or "") \
        + len(state.get("waiting_for") or "") + len(state.get("batch") or "")
    for step in state["steps"]:
        size += len(step.get("output") or "") + len(step["id"]) + 32
    return size


class StateWrites:
    """Dirty run states of the current batch, and the undo log of the current record (or tick)."""

    def __init__(self, topic: str, max_bytes: int) -> None:
        self.topic = topic
        self.max_bytes = max_bytes
        self.dirty: dict[_Key, dict[str, Any]] = {}
        self._undo: dict[_Key, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {}

    def begin(self) -> None:
        """A new record (or tick) starts: what it changes can be undone until the next begin."""
        self._undo.clear()

    def write(self, tables: dict[int, Any], state: dict[str, Any], p: int, out: Emitter) -> None:
        """Put the new state in the table and mark it for the end of the batch.

        A state that may not fit the broker is encoded now, so the record that made it fails (and the owner
        can fail the run instead) rather than the batch's commit."""
        if rough_size(state) * 2 > self.max_bytes:
            size = len(out.serde.encode(RUN_STATE, state))
            if size > self.max_bytes:
                raise OutputTooLarge(f"output record for {self.topic} is {size} bytes (limit {self.max_bytes})")
        run_id = state["run_id"]
        table = tables.setdefault(p, {})
        key = (p, run_id)
        if key not in self._undo:
            self._undo[key] = (table.get(run_id), self.dirty.get(key))
        table[run_id] = state
        self.dirty[key] = state

    def discard(self, tables: dict[int, Any]) -> None:
        """Undo the table changes of the record that just failed."""
        for (p, run_id), (old, old_dirty) in self._undo.items():
            table = tables.get(p)
            if table is None:
                continue
            if old is None:
                table.pop(run_id, None)
            else:
                table[run_id] = old
            if old_dirty is None:
                self.dirty.pop((p, run_id), None)
            else:
                self.dirty[(p, run_id)] = old_dirty
        self._undo.clear()

    def flush(self, out: Emitter, owned: dict[int, Any]) -> None:
        """Emit the last state of every run changed in this batch (of partitions still owned); a stored run
        table takes the same bytes into its store's open writes."""
        encode = out.serde.encode
        for (p, run_id), state in self.dirty.items():
            table = owned.get(p)
            if table is not None:
                payload = encode(RUN_STATE, state)
                out.send(self.topic, run_id, None, payload, partition=p)
                if isinstance(table, RunTable):
                    table.staged(run_id, payload)
        self.dirty.clear()
        self._undo.clear()

    def forget(self, partitions: list[int] | set[int]) -> None:
        """Partitions revoked or rebuilt: their pending writes are void (the table is rebuilt from the topic)."""
        gone = set(partitions)
        self.dirty = {k: v for k, v in self.dirty.items() if k[0] not in gone}
        self._undo = {k: v for k, v in self._undo.items() if k[0] not in gone}
