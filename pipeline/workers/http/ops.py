"""Read an app's answer to a call, and map it onto the outcome records the run owner applies (pure).

An answer counts only if an SDK made it: it carries ``X-Inngest-Sdk``. A 2xx without it (a proxy's page, a
wrong URL) is a failed attempt, never a result. Then:

* ``200``: the function returned (the body is its result; empty is ``null``);
* ``206``: operations, a JSON list of ``{id, op, ...}`` (``StepRun``, ``StepError``, ``StepFailed``,
  ``StepPlanned``, ``Sleep``, ``WaitForEvent``, ``InvokeFunction``, ``RunComplete``);
* ``4xx``/``5xx``: the function failed; ``X-Inngest-No-Retry: true`` makes it final, ``Retry-After``
  (seconds or a date) says when to retry. The status code itself decides nothing.

A ``Sleep``'s duration is ``opts.duration`` (inngest-py) or the op's ``name`` (inngest-js sends ``"5s"``
there), a time string or a date; likewise a ``WaitForEvent``'s event is ``opts.event`` or the op's ``name``.
A ``StepRun``'s data is stored as ``{"data": x}``, the shape it goes back in.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...protocol.errors import error_json, error_payload
from ...protocol.invocations import outcome
from ...protocol.records import StepOutcome
from ...protocol.timestr import BadTimeString, duration_ms, until_ms

DEFAULT_WAIT_TIMEOUT_MS = 365 * 86_400_000


@dataclass
class Answer:
    """One call's answer, read. ``kind``: ``done`` (``result``), ``ops`` (``ops``) or ``error``."""

    kind: str
    result: Any = None
    ops: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    retriable: bool = True


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def retry_at_ms(value: str | None, now_ms: int) -> int | None:
    """``Retry-After``: seconds, an HTTP date or an RFC 3339 date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return now_ms + int(text) * 1000
    try:
        return until_ms(text, now_ms) if "T" in text else None
    except BadTimeString:
        pass
    try:
        return int(email.utils.parsedate_to_datetime(text).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def read_answer(status: int, headers: Mapping[str, str], body: bytes, now_ms: int) -> Answer:
    """Read an HTTP answer into an :class:`Answer` (see the module doc)."""
    if _header(headers, "x-inngest-sdk") is None:
        return Answer("error", error=error_payload(
            f"the app's answer (HTTP {status}) did not come from an Inngest SDK (no X-Inngest-Sdk header)",
            "NotAnSdkAnswer"))
    try:
        parsed: Any = json.loads(body) if body.strip() else None
    except ValueError:
        parsed = body.decode(errors="replace")
    if status >= 300:
        error = _error_of(parsed, status)
        retry_at = retry_at_ms(_header(headers, "retry-after"), now_ms)
        if retry_at is not None:
            error["retry_at"] = retry_at
        no_retry = (_header(headers, "x-inngest-no-retry") or "").strip().lower() == "true"
        return Answer("error", error=error, retriable=not no_retry)
    if status == 206 or (isinstance(parsed, list) and parsed and all(_is_op(o) for o in parsed) and status == 200
                         and any(o["op"] == "RunComplete" for o in parsed)):
        if not isinstance(parsed, list) or not all(_is_op(o) for o in parsed):
            return Answer("error", error=error_payload(f"a 206 answer that is not a list of operations: {parsed!r}",
                                                       "BadOperations"))
        return Answer("ops", ops=parsed,
                      retriable=(_header(headers, "x-inngest-no-retry") or "").strip().lower() != "true")
    return Answer("done", result=parsed)


def _is_op(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("op"), str)


def _error_of(parsed: Any, status: int) -> dict[str, Any]:
    """Inngest's error shape from what the SDK sent (``{name, message, stack}``; inngest-py adds ``code``)."""
    if isinstance(parsed, dict) and ("message" in parsed or "name" in parsed):
        payload = error_payload(str(parsed.get("message") or ""), str(parsed.get("name") or "Error"),
                                parsed.get("stack") if isinstance(parsed.get("stack"), str) else None)
        return payload
    return error_payload(f"HTTP {status}: {str(parsed)[:2000]}", "Error")


def step_error(op: Mapping[str, Any]) -> dict[str, Any]:
    """A ``StepError``/``StepFailed`` op's error in Inngest's shape."""
    raw = op.get("error")
    if isinstance(raw, dict):
        return _error_of(raw, 500)
    return error_payload(str(raw or "step failed"), "StepError")


def step_entry(op: Mapping[str, Any], no_retry: bool = False) -> dict[str, Any]:
    """A step that ran in a parallel group, as a ``steps`` outcome entry: its output or its error."""
    if op["op"] == "StepRun":
        return {"id": op["id"], "output": json.dumps({"data": op.get("data")})}
    if op["op"] in ("StepError", "StepFailed"):
        return {"id": op["id"], "error": step_error(op), "retriable": op["op"] == "StepError" and not no_retry}
    return {"id": op["id"], "error": error_payload(f"a planned step answered {op['op']!r}", "StepNotRun"),
            "retriable": True}


def op_outcome(inv: Mapping[str, Any], op: Mapping[str, Any], started: int, finished: int, worker: str,
               no_retry: bool = False) -> StepOutcome:
    """The outcome of one operation (not ``StepPlanned``: the caller runs planned steps first)."""
    kind, step_id = op["op"], op.get("id")
    opts = op.get("opts") if isinstance(op.get("opts"), dict) else {}
    assert isinstance(opts, dict)
    if kind == "StepRun":
        return outcome(inv, "step", started, finished, worker, step_id=step_id,
                       output=json.dumps({"data": op.get("data")}))
    if kind in ("StepError", "StepFailed"):
        return outcome(inv, "error", started, finished, worker, step_id=step_id, error=error_json(step_error(op)),
                       retriable=kind == "StepError" and not no_retry)
    if kind == "Sleep":
        until = opts.get("duration") or op.get("name")
        try:
            wake_at = until_ms(until, finished)
        except BadTimeString as exc:
            return _bad(inv, started, finished, worker, f"Sleep: {exc}")
        return outcome(inv, "sleep", started, finished, worker, step_id=step_id, wake_at=wake_at)
    if kind == "WaitForEvent":
        event = opts.get("event") or op.get("name")  # inngest-py: opts.event; inngest-js 3: the op's name
        if not isinstance(event, str) or not event:
            return _bad(inv, started, finished, worker, f"WaitForEvent without an event: {op!r}")
        try:
            timeout = duration_ms(opts["timeout"]) if opts.get("timeout") else DEFAULT_WAIT_TIMEOUT_MS
        except BadTimeString as exc:
            return _bad(inv, started, finished, worker, f"WaitForEvent timeout: {exc}")
        spec = {"event": event, "if": opts.get("if"), "invoke": None}
        return outcome(inv, "wait", started, finished, worker, step_id=step_id, wake_at=finished + timeout,
                       wait=json.dumps(spec))
    if kind == "InvokeFunction":
        payload = opts.get("payload") if isinstance(opts.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        try:
            timeout = duration_ms(opts["timeout"]) if opts.get("timeout") else DEFAULT_WAIT_TIMEOUT_MS
        except BadTimeString as exc:
            return _bad(inv, started, finished, worker, f"InvokeFunction timeout: {exc}")
        invoke = {"function_id": opts.get("function_id"), "data": payload.get("data") or {},
                  "user": payload.get("user") or {}}
        spec = {"event": "inngest/function.finished", "if": None, "invoke": invoke}
        return outcome(inv, "wait", started, finished, worker, step_id=step_id, wake_at=finished + timeout,
                       wait=json.dumps(spec))
    if kind == "RunComplete":
        return outcome(inv, "completed", started, finished, worker, output=json.dumps(op.get("data")))
    return _bad(inv, started, finished, worker, f"operation {kind!r} is not supported by this runtime yet",
                retriable=False)


def _bad(inv: Mapping[str, Any], started: int, finished: int, worker: str, message: str,
         retriable: bool = True) -> StepOutcome:
    return outcome(inv, "error", started, finished, worker,
                   error=error_json(error_payload(message, "UnsupportedOperation")), retriable=retriable)


def answer_outcome(inv: Mapping[str, Any], answer: Answer, started: int, finished: int, worker: str) -> StepOutcome:
    """The outcome of an answer without planned steps: a result, an error, or its one operation (several
    ``StepRun``/``StepError`` at once, as a group's steps, become one ``steps`` outcome)."""
    if answer.kind == "done":
        return outcome(inv, "completed", started, finished, worker, output=json.dumps(answer.result))
    if answer.kind == "error":
        return outcome(inv, "error", started, finished, worker, error=error_json(answer.error or {}),
                       retriable=answer.retriable)
    ops = answer.ops
    if len(ops) == 1:
        return op_outcome(inv, ops[0], started, finished, worker, no_retry=not answer.retriable)
    if all(o["op"] in ("StepRun", "StepError", "StepFailed") for o in ops):
        return steps_outcome(inv, [step_entry(o, not answer.retriable) for o in ops], started, finished, worker)
    return _bad(inv, started, finished, worker, f"operations {[o['op'] for o in ops]} at once are not supported yet",
                retriable=False)


def steps_outcome(inv: Mapping[str, Any], entries: list[dict[str, Any]], started: int, finished: int,
                  worker: str) -> StepOutcome:
    """Steps that ran side by side (planned together), as one ``steps`` outcome."""
    return outcome(inv, "steps", started, finished, worker, step_id=entries[0]["id"], output=json.dumps(entries))
