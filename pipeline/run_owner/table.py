"""The run owner's run table of one partition, kept in a state store (:mod:`pipeline.kafka.store`), with the two
indexes that let an assignment start without reading every run.

Why: a million sleeping runs at ~3 KiB each do not fit a bounded process, and deriving timers, slots and gate
waits from every run at each assignment (as the owner once did) would read the million before the first command.
So the store holds, per partition:

* ``r<run id>``: the run's state, Avro encoded, the very bytes of its ``runs`` changelog record (a restore
  copies them without decoding);
* ``t<due time, 8 bytes big-endian><run id>``: the run's next timer (:func:`~.state.next_timer`), sorted by due
  time, so the owner loads only the timers due within its horizon (:class:`~.undo.Timers`);
* ``h<run id>``: the run holds concurrency slots or waits for one, for its throttle or at the gate: the few runs
  the slot counts, slot and throttle queues and gate waits are derived from at assignment (:mod:`.rearm`);
* ``s<singleton key>\x00<run id>``: an active run of a singleton function (:mod:`.singleton`): the active run of
  a key is one store read away.

The indexes are written with the state, in the same transaction's overlay, and derived again from each
changelog record a restore applies, so they never disagree with the runs. In memory: the states changed since
the last end of batch (``_live``, bounded by a transaction), an LRU of decoded states (:data:`CACHE_RUNS`) and a
bounded set of run ids the store lacks (:data:`ABSENT_RUNS`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Message

from ..kafka.store import Store
from ..kafka.tables import StoredTable
from ..serde import RUN_STATE, Serde
from . import state as st

CACHE_RUNS = 10_000  # decoded run states kept in memory per partition
ABSENT_RUNS = 10_000  # run ids known not to be in the table (a start looks its new run up several times)
_RUN, _TIMER, _HELD, _SINGLETON = b"r", b"t", b"h", b"s"


def _timer_key(at: int, run_id: bytes) -> bytes:
    return _TIMER + max(at, 0).to_bytes(8, "big") + run_id


def _held(state: dict[str, Any]) -> bool:
    """Whether the run is one that slot counts, slot queues or gate waits are derived from."""
    return not st.is_ended(state) and (st.holds_slot(state) or state.get("held") in (st.CONCURRENCY, st.GATE,
                                                                                      st.THROTTLE))


def _singleton(state: dict[str, Any] | None) -> bytes | None:
    """The singleton index entry's key prefix of an active run of a singleton function, else None."""
    if state is None or st.is_ended(state) or not state.get("singleton_key"):
        return None
    key: str = state["singleton_key"]
    return _SINGLETON + key.encode() + b"\x00"


class RunTable(StoredTable):
    """run id -> run state (a dict) of one partition, in its store (see the module)."""

    def __init__(self, store: Store, serde: Serde, cache_runs: int = CACHE_RUNS) -> None:
        super().__init__(store)
        self.serde = serde
        self.cache_runs = cache_runs
        self._live: dict[str, dict[str, Any] | None] = {}  # written since the last end of batch (None: removed)
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # run ids the store was just asked for and does not have: a start command reads its new run's id three or
        # four times (is it a duplicate, the old state, the indexes) before the first write; each was a store
        # miss. Only this table writes runs, and each write or restored record takes its id out.
        self._absent: set[str] = set()

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, run_id: str, default: Any = None) -> Any:
        live = self._live
        if run_id in live:
            state = live[run_id]
            return default if state is None else state
        cache = self._cache
        state = cache.get(run_id)
        if state is not None:
            cache.move_to_end(run_id)
            return state
        if run_id in self._absent:
            return default
        raw = self.store.get(_RUN + run_id.encode())
        if raw is None:
            if len(self._absent) >= ABSENT_RUNS:
                self._absent.clear()
            self._absent.add(run_id)
            return default
        state = self.serde.decode_as(RUN_STATE, raw)
        self._remember(run_id, state)
        return state

    def __getitem__(self, run_id: str) -> dict[str, Any]:
        state: dict[str, Any] | None = self.get(run_id)
        if state is None:
            raise KeyError(run_id)
        return state

    def __contains__(self, run_id: object) -> bool:
        return isinstance(run_id, str) and self.get(run_id) is not None

    def keys(self) -> Iterator[str]:
        for state in self.values():
            yield state["run_id"]

    def values(self) -> Iterator[dict[str, Any]]:
        """Every run, read from the store as it goes (a million runs are never all in memory)."""
        live = dict(self._live)
        for state in live.values():
            if state is not None:
                yield state
        for key, raw in self.store.scan(_RUN, _RUN + b"\xff"):
            run_id = key[1:].decode()
            if run_id in live:
                continue
            cached = self._cache.get(run_id)
            yield cached if cached is not None else self.serde.decode_as(RUN_STATE, raw)

    def held(self) -> Iterator[dict[str, Any]]:
        """The runs holding slots or waiting for one or at the gate."""
        for key, _ in self.store.scan(_HELD, _HELD + b"\xff"):
            state = self.get(key[1:].decode())
            if state is not None and _held(state):
                yield state

    def singleton_runs(self, singleton_key: str) -> list[str]:
        """The ids of the active runs of ``singleton_key`` (at most one, by :mod:`.singleton`)."""
        prefix = _SINGLETON + singleton_key.encode() + b"\x00"
        return [key[len(prefix):].decode() for key, _ in self.store.scan(prefix, prefix + b"\xff")]

    def timers(self, start: int, stop: int) -> Iterator[tuple[int, str]]:
        """(due time, run id) of the timers due in ``[start, stop)``, earliest first."""
        low = _TIMER + max(start, 0).to_bytes(8, "big")
        high = _TIMER + max(stop, 0).to_bytes(8, "big")
        for key, _ in self.store.scan(low, high):
            yield int.from_bytes(key[1:9], "big"), key[9:].decode()

    # -- writes --------------------------------------------------------------------------------------------

    def __setitem__(self, run_id: str, state: dict[str, Any]) -> None:
        """The run's new state: visible at once, its indexes in the store's overlay; its bytes come with
        :meth:`staged` (the end of the batch, when its changelog record is made)."""
        self._index(run_id.encode(), self.get(run_id), state)
        self._live[run_id] = state
        self._absent.discard(run_id)

    def pop(self, run_id: str, default: Any = None) -> Any:
        old = self.get(run_id)
        if old is None:
            return default
        key = run_id.encode()
        self._index(key, old, None)
        self.store.delete(_RUN + key)
        self._live[run_id] = None
        self._cache.pop(run_id, None)
        return old

    def staged(self, run_id: str, payload: bytes) -> None:
        """The run's changelog record is made: its bytes go to the store's overlay (written at the commit)."""
        self.store.put(_RUN + run_id.encode(), payload)
        state = self._live.pop(run_id, None)
        if state is not None:
            self._remember(run_id, state)

    def _index(self, key: bytes, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        store = self.store
        was = st.next_timer(old) if old is not None else None
        now = st.next_timer(new) if new is not None else None
        if was != now:
            if was is not None:
                store.delete(_timer_key(was, key))
            if now is not None:
                store.put(_timer_key(now, key), b"")
        single_was, single_now = _singleton(old), _singleton(new)
        if single_was != single_now:
            if single_was is not None:
                store.delete(single_was + key)
            if single_now is not None:
                store.put(single_now + key, b"")
        held_was = old is not None and _held(old)
        held_now = new is not None and _held(new)
        if held_was != held_now:
            if held_now:
                store.put(_HELD + key, b"")
            else:
                store.delete(_HELD + key)

    def _remember(self, run_id: str, state: dict[str, Any]) -> None:
        cache = self._cache
        cache[run_id] = state
        cache.move_to_end(run_id)
        if len(cache) > self.cache_runs:
            cache.popitem(last=False)

    # -- the loop's side -----------------------------------------------------------------------------------

    def load(self, msg: Message) -> None:
        """Apply one ``runs`` record (a restore): the bytes as they are, the indexes from the decoded state."""
        key, value = msg.key(), msg.value()
        if key is None:
            raise ValueError("a runs record without a key")
        run_id = key.decode()
        old = self.get(run_id)
        self._cache.pop(run_id, None)
        self._absent.discard(run_id)
        if value is None:
            if old is not None:
                self._index(key, old, None)
            self.store.delete(_RUN + key)
            return
        state = self.serde.decode_as(RUN_STATE, value)
        if state["run_id"] != run_id:
            raise ValueError(f"runs record keyed {run_id!r} holds run {state['run_id']!r}")
        self._index(key, old, state)
        self.store.put(_RUN + key, value)

    def commit(self, offset: int | None) -> None:
        # what is still live was never staged: a record's undo put back what the store has already
        for run_id, state in self._live.items():
            if state is not None:
                self._remember(run_id, state)
        self._live.clear()
        super().commit(offset)

    def abort(self) -> None:
        self._live.clear()
        self._cache.clear()
        self._absent.clear()
        super().abort()

    def wipe(self) -> None:
        self._live.clear()
        self._cache.clear()
        self._absent.clear()
        super().wipe()

    def close(self) -> None:
        self._live.clear()
        self._cache.clear()
        self._absent.clear()
        super().close()
