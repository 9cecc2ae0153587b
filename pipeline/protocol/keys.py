"""Join keys and partitions of the cancel join (listeners meet signals in one partition).

A join key is ``event name`` + ``field path`` + canonical value, from the equality predicate
of the cancel condition (``async.data.importId == "abc"``), or just the event name when the
condition has no equality predicate (slower: every signal of that name meets every listener).
Listeners and signals are partitioned by the join key alone (crc32), while their record keys
add the run id or event id so that compaction keeps one record per listener / signal.
"""

from __future__ import annotations

import zlib

from ..expr import normalize_key_value

SEP = "\x1f"


def join_key(event_name: str, path: str | None = None, value: object = None) -> str:
    """The join key for an event name and, if the condition has one, its equality path and value."""
    if path is None:
        return event_name
    return f"{event_name}{SEP}{path}{SEP}{normalize_key_value(value)}"


def partition_for(key: str, partitions: int) -> int:
    """The cancel-index partition of a join key (stable across processes and restarts)."""
    return zlib.crc32(key.encode()) % partitions


SIGNAL_MARK = "\x00sig\x00"


def listener_record_key(key: str, run_id: str) -> str:
    """The cancel-index record key of a listener: one per (join key, run), so compaction keeps the latest."""
    return f"{key}\x00{run_id}"


def signal_record_key(key: str, event_id: str) -> str:
    """The cancel-index record key of a signal: one per (join key, event)."""
    return f"{key}{SIGNAL_MARK}{event_id}"


def parse_index_key(record_key: str) -> tuple[str, str, str]:
    """``(kind, join key, id)`` of a cancel-index record key: ``("signal", key, event id)`` or
    ``("listener", key, run id)``. The reader of a tombstone has only the key to go by."""
    if SIGNAL_MARK in record_key:
        join, _, event_id = record_key.partition(SIGNAL_MARK)
        return "signal", join, event_id
    join, _, run_id = record_key.rpartition("\x00")
    return "listener", join, run_id
