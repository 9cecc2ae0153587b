"""``X-Inngest-Event-Id-Seed``: event ids an SDK can send again, so that its retry of a send creates no duplicate.

The SDKs send ``<unix ms>,<base64 of 10 random bytes>`` with every send, the same on a retry. As the Inngest
server does, the id of the send's event number ``i`` is the ULID of that time and those bytes with ``i`` added to
their last four (big-endian, wrapping). Only events without an id get one; the matcher's 24 h event-id dedup then
drops the retry's copies.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ulid import ULID


def seeded_id(seed: str, index: int) -> str | None:
    """The id of event ``index`` of a send with this seed, or None when the seed is not well formed."""
    parts = seed.split(",")
    if len(parts) != 2:
        return None
    try:
        millis = int(parts[0])
        entropy = bytearray(base64.b64decode(parts[1], validate=True))
    except (ValueError, binascii.Error):
        return None
    if millis <= 0 or millis >= 1 << 48 or len(entropy) != 10:
        return None
    low = (int.from_bytes(entropy[6:10], "big") + index) % (1 << 32)
    entropy[6:10] = low.to_bytes(4, "big")
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + bytes(entropy)))


def apply_seed(items: list[Any], seed: str | None) -> None:
    """Give each event of ``items`` that has no id its seeded id (in place; a bad seed changes nothing)."""
    if not seed:
        return
    for i, item in enumerate(items):
        if isinstance(item, dict) and not item.get("id"):
            eid = seeded_id(seed, i)
            if eid is None:
                return
            item["id"] = eid
