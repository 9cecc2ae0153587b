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
import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..apps.applied import AppliedCheck, describe_lag
from ..apps.register import SyncRefused, read_sync
from ..apps.store import PublishFailed, publish, sync_producer
from ..kafka import topics as t
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
    """Sync an app's functions (Inngest's SDK protocol)."""
    config = api_config(request)
    if not sdk_authorized(config.settings.signing_key, request.headers.get("authorization")):
        return SafeJSONResponse({"error": "a valid signing key is required to sync"}, status_code=401)
    try:
        body = await json_body(request)
    except Exception as exc:  # noqa: BLE001 - any unreadable body is the SDK's 400
        return SafeJSONResponse({"error": f"the sync body is not JSON: {exc}"}, status_code=400)
    try:
        sync = read_sync(body, now_ms())
        for synced in sync.functions:  # compiled as every service will (a bad CEL expression is refused here)
            synced_function(synced)
    except SyncRefused as exc:
        return SafeJSONResponse({"error": str(exc), "problems": exc.problems}, status_code=400)
    except (DefinitionError, ValueError, TypeError) as exc:
        return SafeJSONResponse({"error": str(exc), "problems": [str(exc)]}, status_code=400)
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
        producer = _producer(request)
        try:
            target = await run_in_threadpool(publish, producer, config.settings.topic(t.FUNCTIONS), changed,
                                             removed, config.serde)
        except PublishFailed as exc:
            return SafeJSONResponse({"error": f"the functions could not be stored: {exc}"}, status_code=503)
        if registry is not None:  # this API shows it at once (if its own follower has not yet): /v1/apps, the UI
            registry.put([synced_function(r) for r in changed], removed)
    else:  # nothing written now; an earlier sync of the same functions may not have been proven applied
        target = await run_in_threadpool(check.end_offset)
    behind = await run_in_threadpool(check.wait, target)
    if behind:
        return SafeJSONResponse({"error": f"stored, but not yet in effect: {describe_lag(behind, target)}; "
                                          "an event sent now may start nothing (sync again to check)"},
                                status_code=503)
    return SafeJSONResponse({"ok": True, "modified": bool(changed or removed),
                             "functions": [json.loads(r["definition"]) | {"id": r["id"]} for r in changed]})


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
