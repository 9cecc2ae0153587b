"""Records shown to a person (``pipeline tail``, ``pipeline dlq show``): decoded where possible, raw text else."""

from __future__ import annotations

import json
from typing import Any

from .avro import Serde
from .errors import SerdeError


def decode_for_display(serde: Serde, value: bytes | None) -> Any:
    """A record as JSON-friendly data: Avro records decoded (JSON text fields expanded), else raw text."""
    if value is None:
        return None
    try:
        name, record = serde.decode(value)
    except SerdeError:
        return value.decode("utf-8", "replace")
    out = dict(record)
    for key in ("data", "user", "event", "output", "error", "residual"):
        if isinstance(out.get(key), str) and out[key][:1] in "{[\"":
            try:
                out[key] = json.loads(out[key])
            except json.JSONDecodeError:
                pass
    out["_schema"] = name
    return out
