"""What an Inngest SDK sends to ``POST /fn/register``, read into ``FunctionDef`` records (pure).

inngest-js (3.x and 4.x) and inngest-py describe an app the same way with a few spellings apart: the app id is
``appName`` (js) or ``appname`` (py), the deploy type ``deployType`` or ``deploy_type``; inngest-py sends every
option key, unset ones as null, inngest-js leaves them out; ``concurrency`` may be a bare number (js). Each
function's composite id is ``<app id>-<fn id>``, its per-function URL the app's with ``fnId`` and
``stepId=step``, and ``steps.step.retries.attempts`` its retries (4 when left out, as both SDKs default).

Options this runtime has not built are refused by name (``rateLimit``, ``debounce``, ...), the whole sync with
them, so an app never runs with a control silently missing; so are concurrency scopes other than ``fn``. A cron
trigger (``{"cron": "..."}``, inngest-py sending ``event`` and ``expression`` as null beside it) is kept as
``{"cron": ...}`` once its expression parses; the run owner fires it as it fires an ``--app`` function's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..protocol.functions import function_def
from ..protocol.records import FunctionDef
from ..protocol.timestr import BadTimeString, duration_ms
from ..sdk.cron import BadCron, CronSchedule
from .pending import read_batch, read_debounce
from .register_flow_start import read_flow_start

DEFAULT_RETRIES = 4
MAX_RETRIES = 20


class SyncRefused(ValueError):
    """The sync is refused; ``problems`` name each function and option that is invalid or not built."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class SyncRequest:
    """One app's sync, read: its id, URL, SDK and the records of its functions."""

    app_id: str
    url: str
    sdk: str
    framework: str
    functions: list[FunctionDef]


def read_sync(body: Any, now_ms: int) -> SyncRequest:
    """Read a sync body. Raises :class:`SyncRefused` naming every problem found (not only the first)."""
    if not isinstance(body, dict):
        raise SyncRefused(["the sync body must be a JSON object"])
    app_id = body.get("appName") or body.get("appname") or body.get("app_name")
    url = body.get("url")
    problems = []
    if not isinstance(app_id, str) or not app_id:
        problems.append("appName: required, a non-empty string")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append(f"url: {url!r} is not an http(s) URL")
    functions = body.get("functions")
    if not isinstance(functions, list):
        problems.append("functions: required, a list")
        functions = []
    if problems:
        raise SyncRefused(problems)
    assert isinstance(app_id, str) and isinstance(url, str)
    sdk = str(body.get("sdk") or "")
    records = []
    seen: set[str] = set()
    for i, raw in enumerate(functions):
        where = f"functions[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be an object")
            continue
        fn_id = raw.get("id")
        if isinstance(fn_id, str):
            where = f"function {fn_id!r}"
        try:
            records.append(_read_function(raw, app_id, url, sdk, now_ms))
        except SyncRefused as exc:
            problems += [f"{where}: {p}" for p in exc.problems]
            continue
        if fn_id in seen:
            problems.append(f"{where}: the id appears twice")
        seen.add(str(fn_id))
    if problems:
        raise SyncRefused(problems)
    return SyncRequest(app_id=app_id, url=url, sdk=sdk, framework=str(body.get("framework") or ""),
                       functions=records)


def _read_function(raw: dict[str, Any], app_id: str, app_url: str, sdk: str, now_ms: int) -> FunctionDef:
    problems = []
    fn_id = raw.get("id")
    if not isinstance(fn_id, str) or not fn_id.startswith(f"{app_id}-") or len(fn_id) <= len(app_id) + 1:
        raise SyncRefused([f"id {fn_id!r}: must be the composite id '{app_id}-<function id>'"])
    steps = raw.get("steps")
    step = steps.get("step") if isinstance(steps, dict) else None
    step = step if isinstance(step, dict) else {}
    runtime = step.get("runtime")
    url = runtime.get("url") if isinstance(runtime, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append(f"steps.step.runtime.url: {url!r} is not an http(s) URL")
    retries_spec = step.get("retries")
    attempts = retries_spec.get("attempts") if isinstance(retries_spec, dict) else None
    retries = DEFAULT_RETRIES if attempts is None else attempts
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        problems.append(f"retries {retries!r}: must be between 0 and {MAX_RETRIES}")
    triggers = _triggers(raw.get("triggers"), problems)
    cancels = _cancels(raw.get("cancel"), problems)
    concurrency = _concurrency(raw.get("concurrency"), problems)
    timeouts = _timeouts(raw.get("timeouts"), problems)
    rate_limit = _rate_limit(raw.get("rateLimit", raw.get("rate_limit")), problems)
    idempotency = raw.get("idempotency")
    if idempotency is not None and (not isinstance(idempotency, str) or not idempotency.strip()):
        problems.append(f"idempotency: {idempotency!r} must be a CEL expression (a string)")
    flow_start = read_flow_start(raw, problems)
    debounce = read_debounce(raw.get("debounce"), problems)
    batch = read_batch(raw.get("batchEvents") or raw.get("batch_events"), raw, problems)
    if problems:
        raise SyncRefused(problems)
    definition = {"triggers": triggers, "cancel": cancels, "concurrency": concurrency, "retries": retries,
                  "timeouts": timeouts, "rate_limit": rate_limit, "idempotency": idempotency or None, **flow_start,
                  "debounce": debounce, "batch": batch}
    given = raw.get("name")
    name = given if isinstance(given, str) and given else fn_id[len(app_id) + 1:]
    return function_def(fn_id, app_id, name, str(url), definition, app_url=app_url, sdk=sdk, synced_at=now_ms)


def _triggers(raw: Any, problems: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        problems.append("triggers: at least one is required")
        return []
    out = []
    for t in raw:
        if isinstance(t, dict) and isinstance(t.get("cron"), str) and not t.get("event"):  # py adds nulls
            try:
                CronSchedule(t["cron"])
            except BadCron as exc:
                problems.append(f"triggers: {exc}")
                continue
            if t.get("jitter") not in (None, ""):  # inngest-py's TriggerCron(jitter=...)
                problems.append(f"triggers: cron jitter {t['jitter']!r}: not built yet")
                continue
            out.append({"cron": t["cron"]})
        elif isinstance(t, dict) and isinstance(t.get("event"), str) and t["event"] \
                and isinstance(t.get("expression"), str | None):
            out.append({"event": t["event"], "expression": t.get("expression")})
        else:
            problems.append(f"triggers: {t!r} is neither an event nor a cron trigger")
    return out


def _cancels(raw: Any, problems: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if raw is not None and not isinstance(raw, list):
        problems.append(f"cancel: {raw!r} must be a list")
        return out
    for c in raw if isinstance(raw, list) else []:
        if not isinstance(c, dict) or not isinstance(c.get("event"), str) or not isinstance(c.get("if"), str | None):
            problems.append(f"cancel: {c!r} needs an event (and an if that is a string)")
            continue
        timeout_ms = None
        if c.get("timeout") is not None:
            try:
                timeout_ms = duration_ms(c["timeout"])
            except BadTimeString as exc:
                problems.append(f"cancel timeout: {exc}")
        out.append({"event": c["event"], "if": c.get("if"), "timeout_ms": timeout_ms})
    return out


def _concurrency(raw: Any, problems: list[str]) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if isinstance(raw, int) and not isinstance(raw, bool):
        return [{"limit": raw, "key": None}] if raw > 0 else []
    if isinstance(raw, dict):
        raw = [raw]
    out = []
    for c in raw if isinstance(raw, list) else [raw]:
        if not isinstance(c, dict) or not isinstance(c.get("limit"), int) or not isinstance(c.get("key"), str | None):
            problems.append(f"concurrency: {c!r} needs an integer limit (and a key that is a string)")
            continue
        if c.get("scope") not in (None, "fn"):
            problems.append(f"concurrency scope {c['scope']!r}: not built yet, only 'fn' is")
            continue
        if c["limit"] > 0:
            out.append({"limit": c["limit"], "key": c.get("key")})
    return out


def _timeouts(raw: Any, problems: list[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {"start_ms": None, "finish_ms": None}
    if not isinstance(raw, dict):
        return out
    for key in ("start", "finish"):
        if raw.get(key) is not None:
            try:
                out[f"{key}_ms"] = duration_ms(raw[key])
            except BadTimeString as exc:
                problems.append(f"timeouts.{key}: {exc}")
    return out


MAX_RATE_LIMIT_PERIOD_MS = 24 * 3600 * 1000


def _rate_limit(raw: Any, problems: list[str]) -> dict[str, Any] | None:
    """``rateLimit``/``rate_limit``: ``{limit, period ("1m", or ms), key?}``, period from 1 s to 24 h as in Inngest."""
    if raw in (None, {}):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("limit"), int) or isinstance(raw.get("limit"), bool) \
            or raw["limit"] < 1 or not isinstance(raw.get("key"), str | None):
        problems.append(f"rate_limit: {raw!r} needs an integer limit of at least 1 (and a key that is a string)")
        return None
    try:
        period_ms = duration_ms(raw.get("period"))
    except BadTimeString as exc:
        problems.append(f"rate_limit period: {exc}")
        return None
    if not 1000 <= period_ms <= MAX_RATE_LIMIT_PERIOD_MS:
        problems.append(f"rate_limit period {raw.get('period')!r}: must be between 1s and 24h")
        return None
    return {"limit": raw["limit"], "period_ms": period_ms, "key": raw.get("key") or None}
