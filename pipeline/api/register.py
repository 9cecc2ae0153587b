"""``POST /fn/register``: an app served with an Inngest SDK syncs its functions here.

The SDK sends this after a ``PUT`` to its URL (``pipeline apps sync URL``, ``pipeline dev -u URL``, or anyone's
``curl -X PUT``). The answer is Inngest's: ``200 {"ok": true, "modified": bool}``, or ``400 {"error": "..."}``
naming every function and option refused (options not built yet are refused by name, the whole sync with
them). The functions are written to the compacted ``functions`` topic, which every service follows
(:mod:`pipeline.apps.store`); a function the app no longer serves gets a tombstone. A re-sync that changes
nothing writes nothing and answers ``modified: false``. Either answers only once every live matcher has
proven it applied the functions topic up to the sync (its records, or for an unchanged sync the topic's end:
:mod:`pipeline.apps.applied`), so an event the app sends once its sync returned is matched; a matcher lagging
past ``PIPELINE_FUNCTIONS_APPLY_TIMEOUT_MS`` makes the sync answer 503 naming it (the records stay stored; a
re-sync checks again).

Authentication: with ``PIPELINE_SIGNING_KEY`` set the SDK's bearer token must be the key or its hashed form
(``signkey-<env>-`` + SHA-256 of the key's bytes, as inngest-js sends it, or the hash alone, as inngest-py
does); without one (dev mode) anything is
accepted, ``Bearer undefined`` included (inngest-js in dev mode).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..apps.applied import AppliedCheck, describe_lag
from ..apps.register import SyncRefused, read_sync
from ..apps.store import PublishFailed, publish, publish_sync_result, sync_producer
from ..kafka import topics as t
from ..protocol.app_syncs import record_key, sync_record
from ..protocol.functions import same_function
from ..protocol.records import FunctionDef
from ..sdk.definitions import DefinitionError
from ..sdk.synced import synced_function
from ..serde.models import now_ms
from .auth import bearer_token, keys_equal
from .bodies import json_body
from .context import api_config
from .edge import SafeJSONResponse, answers

router = APIRouter()
log = logging.getLogger("pipeline.api")

_PREFIX = re.compile(r"^(signkey-[a-zA-Z0-9]+-)(.*)$")


def hashed_signing_key(key: str) -> str:
    """The form an SDK sends as its bearer token: the ``signkey-<env>-`` prefix kept, the rest the hex SHA-256
    of the key's bytes (its hex decoded; a key that is not hex is hashed as text)."""
    match = _PREFIX.match(key)
    prefix, rest = (match.group(1), match.group(2)) if match else ("", key)
    try:
        raw = bytes.fromhex(rest)
    except ValueError:
        raw = rest.encode()
    return prefix + hashlib.sha256(raw).hexdigest()


def sdk_authorized(signing_key: str | None, authorization: str | None) -> bool:
    """Whether an SDK's request may sync (always, in dev mode without a signing key)."""
    if not signing_key:
        return True
    token = bearer_token(authorization)
    hashed = hashed_signing_key(signing_key)
    bare = _PREFIX.sub(r"\2", hashed)  # inngest-py sends the hash without the signkey-<env>- prefix
    return any(keys_equal(token, accepted) for accepted in (signing_key, hashed, bare))


@router.post("/fn/register", responses=answers(400, 401, 503), response_model=dict[str, Any])
async def register(request: Request) -> SafeJSONResponse:
    """Sync an app's functions (Inngest's SDK protocol). The result, a refusal's problems included, is kept as the
    app's last sync on the ``app-syncs`` topic (``GET /v1/apps``, the dev UI), whoever started the sync."""
    config = api_config(request)
    if not sdk_authorized(config.settings.signing_key, request.headers.get("authorization")):
        return SafeJSONResponse({"error": "a valid signing key is required to sync"}, status_code=401)
    try:
        body = await json_body(request)
    except Exception as exc:  # noqa: BLE001 - any unreadable body is the SDK's 400
        return SafeJSONResponse({"error": f"the sync body is not JSON: {exc}"}, status_code=400)
    answer, status = await _sync(request, body)
    problems = answer.get("problems") or ([answer["error"]] if "error" in answer else [])
    record = sync_record(body, at=now_ms(), status=status, modified=bool(answer.get("modified")),
                         functions=len(body.get("functions") or []) if isinstance(body, dict) else 0,
                         problems=[str(p) for p in problems])
    if record is not None:
        try:
            await run_in_threadpool(publish_sync_result, _producer(request), config.settings.topic(t.APP_SYNCS),
                                    record, config.serde)
        except PublishFailed as exc:  # the sync's own answer stands; only its record in the UI is missing
            log.warning("the sync's result could not be stored", extra={"app": record_key(record), "error": str(exc)})
    return SafeJSONResponse(answer, status_code=status)


async def _sync(request: Request, body: Any) -> tuple[dict[str, Any], int]:
    """Read, store and prove a sync: the answer and its status."""
    config = api_config(request)
    try:
        sync = read_sync(body, now_ms())
        for synced in sync.functions:  # compiled as every service will (a bad CEL expression is refused here)
            synced_function(synced)
    except SyncRefused as exc:
        return {"error": str(exc), "problems": exc.problems}, 400
    except (DefinitionError, ValueError, TypeError) as exc:
        return {"error": str(exc), "problems": [str(exc)]}, 400
    registry = config.registry
    current: dict[str, FunctionDef] = {}
    if registry is not None:
        for fn in registry.functions:
            record = getattr(fn, "record", None)
            if record is not None and fn.app_id == sync.app_id:
                current[fn.id] = record
    changed: list[FunctionDef] = []
    for record in sync.functions:
        old = current.get(record["id"])
        if old is None or not same_function(old, record):
            if old is not None:  # a re-sync keeps the wait names its runs taught the matcher
                record = FunctionDef(**{**record, "waits": old["waits"]})
            changed.append(record)
    removed = sorted(set(current) - {r["id"] for r in sync.functions})
    check = _check(request)
    if changed or removed:
        try:
            target = await run_in_threadpool(publish, _producer(request), config.settings.topic(t.FUNCTIONS),
                                             changed, removed, config.serde)
        except PublishFailed as exc:
            return {"error": f"the functions could not be stored: {exc}"}, 503
        if registry is not None:  # this API shows it at once (if its own follower has not yet): /v1/apps, the UI
            registry.put([synced_function(r) for r in changed], removed)
    else:  # nothing written now; an earlier sync of the same functions may not have been proven applied
        target = await run_in_threadpool(check.end_offset)
    behind = await run_in_threadpool(check.wait, target)
    if behind:
        return {"error": f"stored, but not yet in effect: {describe_lag(behind, target)}; "
                         "an event sent now may start nothing (sync again to check)"}, 503
    return {"ok": True, "modified": bool(changed or removed),
            "functions": [json.loads(r["definition"]) | {"id": r["id"]} for r in changed]}, 200


def _check(request: Request) -> AppliedCheck:
    """One proof checker per app (an admin client), made at first use."""
    check: AppliedCheck | None = getattr(request.app.state, "applied_check", None)
    if check is None:
        check = AppliedCheck(api_config(request).settings, "register")
        request.app.state.applied_check = check
    return check


def _producer(request: Request) -> Any:
    """One producer per app for function records, made at first use."""
    producer = getattr(request.app.state, "sync_producer", None)
    if producer is None:
        producer = sync_producer(api_config(request).settings)
        request.app.state.sync_producer = producer
    return producer
