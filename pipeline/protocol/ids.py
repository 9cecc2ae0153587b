"""Ids shared by every service: function ids, consumer groups, and deterministic ids, so that replaying or
re-delivering an event never starts a run twice."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, as ULIDs are written
_PAIRS = tuple(a + b for a in _DIGITS for b in _DIGITS)  # every 10-bit value as its two digits
_MAX_TS = (1 << 48) - 1
ULID_LENGTH = 26  # characters of every id made here
_RUN_PREFIXES_MAX = 100_000


def _time_digits(ts_ms: int) -> str:
    """The first 10 digits of a ULID: its 48-bit time (the 130 bits of 26 digits start with 2 zero bits, so the
    time is exactly the first five 10-bit groups)."""
    ts = max(0, min(ts_ms, _MAX_TS))
    p = _PAIRS
    return "".join((p[ts >> 40], p[(ts >> 30) & 1023], p[(ts >> 20) & 1023], p[(ts >> 10) & 1023], p[ts & 1023]))


def _random_digits(digest: bytes) -> str:
    """The last 16 digits of a ULID: its 80 random bits (here a 10-byte hash), as eight digit pairs."""
    v = int.from_bytes(digest, "big")
    p = _PAIRS
    return "".join((p[v >> 70], p[(v >> 60) & 1023], p[(v >> 50) & 1023], p[(v >> 40) & 1023],
                    p[(v >> 30) & 1023], p[(v >> 20) & 1023], p[(v >> 10) & 1023], p[v & 1023]))


def derived_ulid(ts_ms: int, *parts: str) -> str:
    """A ULID whose time part is ``ts_ms`` and whose random part is a hash of ``parts``: same inputs, same id.

    The text is built from a table of digit pairs (python-ulid's ``str()`` cost more than the hash;
    ``tests/unit/test_ids.py`` holds the two equal)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=10).digest()
    return _time_digits(ts_ms) + _random_digits(digest)


def run_id_for(function_id: str, event_id: str, event_ts_ms: int) -> str:
    """The run id of ``function_id`` triggered by ``event_id``: a ULID derived from both."""
    return derived_ulid(event_ts_ms, "run", function_id, event_id)


class EventRunIds:
    """The run ids of one event's runs, each equal to :func:`run_id_for` (``tests/unit/test_ids.py``).

    Why: the matcher derives one per run it starts, ~2.4 per event. What the runs of an event share is done once
    here (the time digits, the event id's bytes), and the hash state of ``"run" NUL <function id> NUL`` is kept
    per function and copied, so a run costs one short hash and eight table lookups."""

    __slots__ = ("_id", "_time")

    # function id -> blake2b state after "run\0<function id>\0" (ids of functions come and go with syncs: bounded)
    _prefixes: ClassVar[dict[str, Any]] = {}

    def __init__(self, event_id: str, event_ts_ms: int) -> None:
        self._id = event_id.encode()
        self._time = _time_digits(event_ts_ms)

    def __call__(self, function_id: str) -> str:
        prefix = self._prefixes.get(function_id)
        if prefix is None:
            if len(self._prefixes) >= _RUN_PREFIXES_MAX:
                self._prefixes.clear()
            prefix = self._prefixes[function_id] = hashlib.blake2b(
                ("run\x00" + function_id + "\x00").encode(), digest_size=10)
        h = prefix.copy()
        h.update(self._id)
        return self._time + _random_digits(h.digest())


def function_id(app_id: str, fn_id: str) -> str:
    """A function's full id, ``<app id>-<function id>`` (the hyphenated slug, as Inngest names it)."""
    return f"{app_id}-{fn_id}"


def consumer_group(topic_prefix: str, service: str) -> str:
    """The consumer group of a service (its offsets; ``pipeline replay group`` moves them)."""
    return f"{topic_prefix}pipeline-{service}"
