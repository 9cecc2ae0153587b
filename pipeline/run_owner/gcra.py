"""The Generic Cell Rate Algorithm, as Inngest's rate limit runs it (pure; times are ms of broker receive time).

One number per key, the *theoretical arrival time* (TAT): when the key would be idle again had every admitted
event been spaced exactly ``period / limit`` apart. An event at ``now`` is admitted when, with it, the TAT stays
within ``(burst + 1)`` emission intervals of ``now``; it then moves the TAT on by one interval. So a quiet key
admits ``burst + 1`` events at once and then one every ``period / limit``; ``limit=1`` admits one per ``period``.

Inngest (pkg/execution/ratelimit) does this in a Redis script with ``burst = limit // 10``; this is the same
arithmetic, on the broker's receive time instead of the clock of whoever asks, so a replay decides the same.
Idempotency is the special case ``limit=1, burst=0, period=window``: one event per window, the rest dropped.
"""

from __future__ import annotations


def admit(tat: int | None, now: int, period_ms: int, limit: int, burst: int = 0) -> int | None:
    """The new TAT if an event at ``now`` is admitted under the stored ``tat`` (None: a fresh key), else None."""
    if limit <= 0:
        return None
    emission = period_ms / limit
    tolerance = emission * (burst + 1)
    current = now if tat is None else _clamp(tat, now, period_ms, tolerance)
    new_tat = max(now, current) + emission
    if now < new_tat - tolerance:
        return None
    return round(_clamp(round(new_tat), now, period_ms, tolerance))


def _clamp(tat: float, now: int, period_ms: int, tolerance: float) -> float:
    """Keep a stored TAT within what the algorithm can produce (Inngest's guard against a corrupt or skewed
    value): never beyond one period plus the tolerance ahead, and a TAT more than a period old is as if absent."""
    if tat > now + period_ms + tolerance:
        return now + period_ms + tolerance
    if tat < now - period_ms:
        return now
    return tat
