"""Ids shared by every service: function ids, consumer groups, and deterministic ids, so that replaying or
re-delivering an event never starts a run twice."""

from __future__ import annotations

import hashlib

_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, as ULIDs are written
_PAIRS = tuple(a + b for a in _DIGITS for b in _DIGITS)  # every 10-bit value as its two digits
_SHIFTS = tuple(range(120, -1, -10))  # 128 bits, read as 13 ten-bit groups (2 leading zero bits)


def derived_ulid(ts_ms: int, *parts: str) -> str:
    """A ULID whose time part is ``ts_ms`` and whose random part is a hash of ``parts``: same inputs, same id.

    The matcher derives one per run it starts, so the text is built from a table of digit pairs, 13 lookups
    (python-ulid's ``str()`` cost more than the hash; ``tests/unit/test_ids.py`` holds the two equal)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=10).digest()
    ts = max(0, min(ts_ms, (1 << 48) - 1))
    value = (ts << 80) | int.from_bytes(digest, "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def run_id_for(function_id: str, event_id: str, event_ts_ms: int) -> str:
    """The run id of ``function_id`` triggered by ``event_id``: a ULID derived from both."""
    return derived_ulid(event_ts_ms, "run", function_id, event_id)


def function_id(app_id: str, fn_id: str) -> str:
    """A function's full id, ``<app id>-<function id>`` (the hyphenated slug, as Inngest names it)."""
    return f"{app_id}-{fn_id}"


def consumer_group(topic_prefix: str, service: str) -> str:
    """The consumer group of a service (its offsets; ``pipeline replay group`` moves them)."""
    return f"{topic_prefix}pipeline-{service}"
