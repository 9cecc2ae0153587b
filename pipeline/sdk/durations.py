"""Durations as inngest-py reads them: a ``timedelta``, or an ``int`` of **milliseconds**.

Code ported from inngest-py passes ints (``step.sleep("wait", 2000)``, ``Cancel(timeout=60_000)``) and means
milliseconds; reading them as seconds would make a user wait a thousand times longer without any error.
Floats and booleans are refused rather than guessed at.
"""

from __future__ import annotations

import datetime
from typing import Any


def duration_ms(value: Any, what: str) -> int:
    """``value`` (timedelta, or int milliseconds) in milliseconds; TypeError/ValueError naming ``what``."""
    if isinstance(value, datetime.timedelta):
        ms = int(value.total_seconds() * 1000)
    elif isinstance(value, int) and not isinstance(value, bool):
        ms = value
    else:
        raise TypeError(f"{what}: expected a datetime.timedelta or an int of milliseconds, "
                        f"got {type(value).__name__} {value!r}")
    if ms < 0:
        raise ValueError(f"{what}: a duration must not be negative, got {ms} ms")
    return ms


def as_timedelta(value: Any, what: str) -> Any:
    """For pydantic ``mode="before"`` validators: ints become timedeltas of milliseconds, None stays None."""
    if value is None or isinstance(value, datetime.timedelta):
        return value
    try:
        return datetime.timedelta(milliseconds=duration_ms(value, what))
    except TypeError as exc:  # pydantic reports ValueErrors as validation errors, with the field
        raise ValueError(str(exc)) from None
