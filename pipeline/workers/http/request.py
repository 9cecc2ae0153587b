"""Build a call to an app's function: its URL, body and headers (Inngest's SDK protocol; pure).

The body is what every SDK reads: ``event`` and ``events``, ``steps`` (each stored step keyed by the hashed id
the SDK reported it under: ``{"data": x}`` for a step that ran, ``{"error": e}`` for one that failed for good,
``null`` for a sleep or a wait that timed out, the event itself for a wait that matched, and ``{"data": r}`` /
``{"error": e}`` for an invoke), and ``ctx`` (``run_id``, ``attempt`` of the current step, ``max_attempts``,
``disable_immediate_execution``, ``use_api`` false, and ``stack``: the step ids in the order they completed).

No ``ctx.fn_id`` is sent: inngest-js 4.x switches to checkpointing against the server's API once it sees one,
which this runtime does not serve yet.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...protocol.sysevents import FUNCTION_FINISHED

ROOT_STEP = "step"  # stepId of a call that is not aimed at one step
_PREFIX = re.compile(r"^signkey-[a-zA-Z0-9]+-")


def call_url(url: str, fn_id: str, step_id: str = ROOT_STEP) -> str:
    """The function's URL with ``fnId`` and ``stepId`` set (any other query parameter kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("fnId", "stepId")]
    query += [("fnId", fn_id), ("stepId", step_id)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def memo_value(step: Mapping[str, Any]) -> Any:
    """A stored step as the SDK expects it back (see the module doc)."""
    if step.get("error"):
        return {"error": json.loads(step["error"])}
    output = step.get("output")
    if output is None:
        return None
    value = json.loads(output)
    if isinstance(value, dict) and value.get("name") == FUNCTION_FINISHED and isinstance(value.get("data"), dict) \
            and value["data"].get("invoke_correlation_id"):
        data = value["data"]  # an invoke's answer: the child's function.finished event, as the SDK reads it
        return {"error": data["error"]} if data.get("error") else {"data": data.get("result")}
    return value


def call_body(inv: Mapping[str, Any], retries: int, *, disable_immediate_execution: bool = False) -> dict[str, Any]:
    """The JSON body of a call for invocation ``inv``."""
    event = json.loads(inv["event"])
    steps = {s["id"]: memo_value(s) for s in inv["steps"]}
    return {
        "event": event,
        "events": json.loads(inv["batch"]) if inv.get("batch") else [event],  # batch_events: the batch
        "steps": steps,
        "ctx": {
            "run_id": inv["run_id"],
            "attempt": inv["attempt"],
            "max_attempts": retries + 1,
            "disable_immediate_execution": disable_immediate_execution,
            "use_api": False,
            "stack": {"stack": list(steps), "current": len(steps)},
        },
        "use_api": False,
        "version": 1,
    }


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The body as sent: canonical JSON (sorted keys, no spaces), so its signature is that of its JCS form."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(body: bytes, signing_key: str, unix_s: int) -> str:
    """``X-Inngest-Signature``: ``t=<unix s>&s=<hex HMAC-SHA256 of the body then t>``, keyed by the signing key
    with its ``signkey-<env>-`` prefix removed, as the SDKs check it."""
    key = _PREFIX.sub("", signing_key).encode()
    mac = hmac.new(key, body, hashlib.sha256)
    mac.update(str(unix_s).encode())
    return f"t={unix_s}&s={mac.hexdigest()}"


def call_headers(body: bytes, signing_key: str | None, unix_s: int) -> dict[str, str]:
    """Headers of a call: JSON, this server's kind (``dev`` without a signing key, ``cloud`` with one) and the
    signature when a signing key is set."""
    headers = {"Content-Type": "application/json", "X-Inngest-Server-Kind": "cloud" if signing_key else "dev",
               "User-Agent": "pipeline"}
    if signing_key:
        headers["X-Inngest-Signature"] = signature(body, signing_key, unix_s)
    return headers
