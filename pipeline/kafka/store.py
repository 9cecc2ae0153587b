"""An embedded store for a partition's state (RocksDB through ``rocksdict``), checkpointed with its changelog.

Why: a service that keeps its tables in Python dicts needs memory for every run it owns (about 3 KiB each) and
replays the whole compacted changelog at each assignment. Here a partition's table lives in one RocksDB per
(service group, instance, topic, partition) under ``PIPELINE_STATE_DIR``; the compacted topic stays its
changelog, as in Kafka Streams and Quix Streams.

The model (Quix's "state apart from checkpointing"):

* writes of the open Kafka transaction go to an in-memory *overlay* (:attr:`Store.overlay`), read before the
  database, so the service sees its own writes at once;
* when the transaction commits, the overlay and the changelog offset the store is now complete up to are
  written together in one atomic ``WriteBatch`` (:meth:`Store.commit`); an aborted transaction drops the
  overlay (:meth:`Store.abort`). So the database never holds uncommitted state: a process killed at any
  point finds, at restart, committed state up to its stored offset, and reads the changelog's tail from there
  (re-applying a record is idempotent: the changelog holds whole values, the last one wins).
* a store that cannot be opened (corrupt) or whose offset is outside the changelog's range is wiped and
  restored in full (:meth:`Store.wipe`).

Memory is capped: every store of a process shares one LRU block cache and one write-buffer manager
(:class:`StoreMemory`), and the overlay holds one transaction's writes at most.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from bisect import bisect_left, insort
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rocksdict import (
    AccessType,
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
)

log = logging.getLogger("pipeline.store")

OFFSET_KEY = b"\x00offset"  # the changelog offset the store is complete up to; table keys never start with \x00
ORIGIN_KEY = b"\x00origin"  # the Kafka cluster id its changelog lives on
BLOCK_CACHE_BYTES = 32 * 1024 * 1024  # shared by every store of the process
WRITE_BUFFERS_BYTES = 32 * 1024 * 1024  # memtables of every store of the process, together
WRITE_BUFFER_BYTES = 4 * 1024 * 1024  # one memtable
# Flushed memtables (level-0 files) gathered before a compaction merges them into the level below. Every such
# compaction rewrites the whole last level when a table's keys are spread (a canceller's million listeners: 32 MiB
# each time), and its CPU is the service's: at 4 (RocksDB's default) it was 14 us of the canceller's ~50 us per
# signal, at 8 it is 6, but each range scan then seeks in more level-0 files, which gives back most of the
# difference (docs/benchmarks.md). 8 stays well under the write slowdown at 20.
L0_COMPACTION_TRIGGER = 8


class StoreLocked(RuntimeError):
    """Another open store (this process or another) holds the directory."""


class StoreMemory:
    """The memory every store of a process shares: one block cache and one cap on memtables."""

    _shared: StoreMemory | None = None
    _lock = threading.Lock()

    def __init__(self, cache_bytes: int = BLOCK_CACHE_BYTES, buffers_bytes: int = WRITE_BUFFERS_BYTES) -> None:
        self.cache = Cache(cache_bytes)
        self.buffers = WriteBufferManager.new_write_buffer_manager_with_cache(buffers_bytes, False, self.cache)

    @classmethod
    def shared(cls) -> StoreMemory:
        with cls._lock:
            if cls._shared is None:
                cls._shared = StoreMemory()
            return cls._shared

    def options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_bloom_filter(10, False)
        # Index and filter in partitions of ~4 KiB, with only the small top level pinned: a table of a million
        # keys has a 1.5 MiB index and a 2 MiB filter, larger than one shard of the LRU cache (a 32 MiB cache has
        # 64 shards of 512 KiB), so as single blocks they were evicted as soon as used and every lookup read,
        # checksummed and decompressed them again (200 us per canceller signal at 1M listeners instead of 30)
        table.set_index_type(BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_metadata_block_size(4096)
        table.set_pin_top_level_index_and_filter(True)
        opts.set_block_based_table_factory(table)
        opts.set_write_buffer_manager(self.buffers)
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
        opts.set_max_write_buffer_number(2)
        opts.set_level_zero_file_num_compaction_trigger(L0_COMPACTION_TRIGGER)
        opts.set_max_open_files(64)
        opts.set_keep_log_file_num(2)
        opts.set_max_background_jobs(2)
        opts.set_compression_type(DBCompressionType.lz4())
        return opts


def _encode_offset(offset: int) -> bytes:
    return offset.to_bytes(8, "big", signed=True)


class Store:
    """One partition's RocksDB and the overlay of the open transaction (see the module)."""

    def __init__(self, path: Path, memory: StoreMemory | None = None) -> None:
        self.path = path
        self.memory = memory or StoreMemory.shared()
        self.overlay: dict[bytes, bytes | None] = {}  # the open transaction's writes (None: deleted)
        # the overlay's keys in order, made at the first scan and kept up to date from then on (a restore, which
        # never scans, never sorts them): a range scan reads only the open writes in its range
        self._keys: list[bytes] | None = None
        self.db = self._open()
        raw = self.db.get(OFFSET_KEY)
        self.offset: int | None = int.from_bytes(raw, "big", signed=True) if raw is not None else None

    def _open(self) -> Rdict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._rdict()
        except Exception as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreLocked(f"state store {self.path} is in use: {text}") from exc
            log.warning("state store cannot be opened; wiping it for a full restore",
                        extra={"path": str(self.path), "error": text})
            shutil.rmtree(self.path, ignore_errors=True)
            return self._rdict()

    def _rdict(self) -> Rdict:
        """Open the database with this process's options. The default column family's options are passed on their
        own: given only ``options``, rocksdict opens an existing database's column families with the options
        loaded from its OPTIONS file, each with a block cache of its own, so a reopened store ignored the
        shared cache and the write-buffer cap (and every table setting)."""
        opts = self.memory.options()
        return Rdict(str(self.path), opts, column_families={"default": opts}, access_type=AccessType.read_write())

    def check_origin(self, origin: str | None) -> None:
        """Wipe the store if it was filled from another cluster's changelog (a broker made anew keeps topic names
        and offsets that mean something else), and remember ``origin``."""
        if origin is None:
            return
        raw = origin.encode()
        stored = self.db.get(ORIGIN_KEY)
        if stored == raw:
            return
        if stored is not None or self.offset is not None:
            log.warning("state store from another cluster; wiping it for a full restore",
                        extra={"path": str(self.path), "cluster": origin})
            self.wipe()
        self.db.put(ORIGIN_KEY, raw)

    # -- reads: the overlay first ---------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        overlay = self.overlay
        if key in overlay:
            mine: bytes | None = overlay[key]
            return mine
        value: bytes | None = self.db.get(key)
        return value

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in ``[start, stop)`` in order, with their values, the overlay merged in (a snapshot of the overlay
        taken now: changes made while iterating may or may not be seen)."""
        overlay = self.overlay
        keys = self._keys
        if keys is None:
            keys = self._keys = sorted(overlay)
        mine: list[tuple[bytes, Any]] = [(k, overlay[k])
                                         for k in keys[bisect_left(keys, start):bisect_left(keys, stop)]]
        i, n = 0, len(mine)
        it = self.db.iter()
        it.seek(start)
        while it.valid():
            key: bytes = it.key()
            if key >= stop:
                break
            while i < n and mine[i][0] < key:
                if mine[i][1] is not None:
                    yield mine[i]
                i += 1
            if i < n and mine[i][0] == key:
                if mine[i][1] is not None:
                    yield mine[i]
                i += 1
            else:
                yield key, it.value()
            it.next()
        while i < n:
            if mine[i][1] is not None:
                yield mine[i]
            i += 1

    # -- writes: into the overlay until the commit ----------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        overlay = self.overlay
        if self._keys is not None and key not in overlay:
            insort(self._keys, key)
        overlay[key] = value

    def delete(self, key: bytes) -> None:
        overlay = self.overlay
        if self._keys is not None and key not in overlay:
            insort(self._keys, key)
        overlay[key] = None

    def commit(self, offset: int | None = None) -> None:
        """The transaction committed: write the overlay and ``offset`` (None: keep the stored one) atomically."""
        if not self.overlay and (offset is None or offset == self.offset):
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in self.overlay.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if offset is not None:
            batch.put(OFFSET_KEY, _encode_offset(offset))
        self.db.write(batch)
        self.overlay.clear()
        self._keys = None
        if offset is not None:
            self.offset = offset

    def abort(self) -> None:
        """The transaction aborted: forget its writes."""
        self.overlay.clear()
        self._keys = None

    def wipe(self) -> None:
        """Empty the store (its offset too): it is to be restored in full."""
        self.overlay.clear()
        self._keys = None
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.db = self._open()
        self.offset = None

    def close(self) -> None:
        """Forget the overlay (never written: uncommitted) and close; the files stay for a fast return."""
        self.overlay.clear()
        self._keys = None
        self.db.close()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name) or "_"


def state_dir(configured: str | None = None) -> Path:
    """The configured state directory (``PIPELINE_STATE_DIR``), else ``state`` under the per-user pipeline home
    (``$PIPELINE_HOME`` or ``~/.cache/pipeline``)."""
    raw = configured or os.environ.get("PIPELINE_STATE_DIR")
    if raw:
        return Path(raw).expanduser()
    from ..broker._fetch import pipeline_home

    return pipeline_home() / "state"


class StoreDir:
    """Where one service instance keeps its stores: ``<state dir>/<group>/<instance>/<topic>-<partition>``.

    The instance id is unique among the live processes of a service (it names the transactional id), so two
    instances on one host never share a store; RocksDB's own lock guards the rest: a store found locked (a
    stale loop of this process still holds it) is opened under the next free suffix, restored in full."""

    def __init__(self, root: Path, group: str, instance: str, memory: StoreMemory | None = None) -> None:
        self.base = root / _safe(group) / _safe(instance)
        self.memory = memory or StoreMemory.shared()

    def open(self, topic: str, partition: int | None) -> Store:
        """The store of ``topic``'s ``partition`` (None: one store for the whole topic)."""
        name = _safe(topic) if partition is None else f"{_safe(topic)}-{partition}"
        for attempt in range(64):
            path = self.base / (name if attempt == 0 else f"{name}.{attempt}")
            try:
                return Store(path, self.memory)
            except StoreLocked:
                continue
        raise StoreLocked(f"no free state store for {topic}[{partition}] under {self.base}")
