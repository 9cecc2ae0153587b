"""How operators name a point in a topic: a time (ISO-8601, relative like ``-2h``, or ms since the epoch)
or offsets (``N`` for every partition, ``p:o[,p:o...]`` per partition). Pure."""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class BadPosition(ValueError):
    """A time or offset spec that cannot be read (the message says what is accepted)."""


def parse_time(text: str, now_ms: int | None = None) -> int:
    """``2026-11-25T10:00:00Z`` (no zone: UTC), ``-2h``/``-30m``/``-10s``/``-1d``, ``now``, or ms since the epoch."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    value = text.strip()
    if value == "now":
        return now
    m = _RELATIVE.match(value)
    if m:
        return now - int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise BadPosition(f"{text!r} is not a time: use ISO-8601 (2026-11-25T10:00:00Z), relative (-2h, -30m, "
                          "-1d) or ms since the epoch") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Position:
    """A point in a topic: a time, or offsets (``every`` for all partitions, or per partition)."""

    time_ms: int | None = None
    every: int | None = None
    offsets: tuple[tuple[int, int], ...] = ()

    def offset_for(self, partition: int) -> int | None:
        if self.every is not None:
            return self.every
        return dict(self.offsets).get(partition)


def parse_position(text: str, now_ms: int | None = None) -> Position:
    """``p:o[,p:o]`` or a bare offset ``N`` (all partitions) as offsets; anything else as a time."""
    value = text.strip()
    if re.fullmatch(r"\d+:\d+(,\d+:\d+)*", value):
        pairs = tuple((int(p), int(o)) for p, o in (item.split(":") for item in value.split(",")))
        return Position(offsets=pairs)
    return Position(time_ms=parse_time(value, now_ms))


def parse_offsets(text: str) -> Position:
    """``--to-offset``: ``N`` (every partition) or ``p:o[,p:o]``."""
    value = text.strip()
    if value.isdigit():
        return Position(every=int(value))
    if re.fullmatch(r"\d+:\d+(,\d+:\d+)*", value):
        return parse_position(value)
    raise BadPosition(f"{text!r} is not an offset: use N (every partition) or p:o[,p:o...]")
