"""Inngest's time strings (``"30s"``, ``"1h30m"``, ``"2d"``, ``"500ms"``) and RFC 3339 dates, in milliseconds.

The SDKs send durations this way in a sync (cancel timeouts, function timeouts) and in operations (a
``Sleep``'s duration, a ``WaitForEvent``'s timeout); a sleep may also name the date to wake at.
"""

from __future__ import annotations

import datetime
import re

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class BadTimeString(ValueError):
    """Neither a time string nor a date."""


def duration_ms(value: object) -> int:
    """A duration in ms: an int (ms, as inngest-py's ``timedelta`` reaches us after its own conversion) or a
    time string such as ``"1h30m"``. Raises :class:`BadTimeString`."""
    if isinstance(value, bool):
        raise BadTimeString(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str) or not value.strip():
        raise BadTimeString(f"{value!r} is not a duration")
    text = value.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise BadTimeString(f"{value!r} is not a time string such as '30s' or '1h30m'")
    return int(total)


def until_ms(value: object, now_ms: int) -> int:
    """When a sleep given as a time string (from ``now_ms``) or an RFC 3339 date ends, in epoch ms."""
    try:
        return now_ms + duration_ms(value)
    except BadTimeString:
        if not isinstance(value, str):
            raise
    try:
        at = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadTimeString(f"{value!r} is neither a time string nor an RFC 3339 date") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return int(at.timestamp() * 1000)
