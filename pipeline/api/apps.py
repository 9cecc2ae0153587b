"""``/v1/apps``: the apps synced over HTTP, for the dev UI and operators.

``GET /v1/apps``: each app's URL, SDK, last sync and functions (from the ``functions`` topic, as this API follows
it), with ``last_sync``: the result of the app's last ``POST /fn/register`` whoever started it (ok, or the
refusal's problems; from the ``app-syncs`` topic, so it survives restarts; an app whose syncs were all refused is
listed with no functions), and the last sync this API asked for per URL with the app's answer (``syncs``: an
app that could not be reached included). ``POST /v1/apps/sync``
``{"url": ...}``: ask an app to sync (the dev UI's button; ``pipeline apps sync`` does the same from a shell).
Both need the signing key (the router's dependency).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..apps.sync import sync_app
from .auth import signed_router
from .bodies import json_body
from .context import api_config
from .edge import ApiError, answers

router = signed_router()


@router.get("/v1/apps", responses=answers(401))
async def list_apps(request: Request) -> dict[str, Any]:
    """Apps synced with an Inngest SDK, newest sync first."""
    registry = api_config(request).registry
    apps: dict[str, dict[str, Any]] = {}
    for fn in registry.functions if registry is not None else []:
        url = getattr(fn, "app_url", None)
        if not url:
            continue  # defined in code (--app), not synced
        app = apps.setdefault(fn.app_id, {"id": fn.app_id, "url": url, "sdk": getattr(fn, "sdk", ""),
                                           "synced_at": 0, "functions": []})
        app["synced_at"] = max(app["synced_at"], getattr(fn, "synced_at", 0))
        app["functions"].append({"id": fn.id, "name": fn.name, "url": getattr(fn, "url", None),
                                 "triggers": [t.event for t in fn.triggers],
                                 "waits": [w.event for w in fn.waits]})
    table = getattr(request.app.state, "app_syncs", None)
    for key, last in (table.all() if table is not None else {}).items():
        if key not in apps:  # never synced (refused every time), or synced without naming an app
            apps[key] = {"id": last["app_id"] or key, "url": last["url"], "sdk": last["sdk"], "synced_at": 0,
                         "functions": []}
        apps[key]["last_sync"] = last
    attempts = getattr(request.app.state, "sync_attempts", {})
    ordered = sorted(apps.values(), key=lambda a: -max(a["synced_at"], a.get("last_sync", {}).get("at", 0)))
    return {"data": ordered, "syncs": list(attempts.values())}


@router.post("/v1/apps/sync", responses=answers(400, 401))
async def sync(request: Request) -> dict[str, Any]:
    """PUT the app's URL (it then posts its functions to /fn/register); answers what the app said."""
    body = await json_body(request)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ApiError(400, "give {\"url\": \"http(s)://...\"}, the app's Inngest endpoint")
    signed = bool(api_config(request).settings.signing_key)
    try:
        result = await run_in_threadpool(sync_app, url, 30.0, signed=signed)
        attempt = {"url": url, "at": int(time.time() * 1000), "status": result.status, "answer": result.body,
                   "ok": result.ok and not (isinstance(result.body, dict) and "error" in result.body)}
    except httpx.HTTPError as exc:
        attempt = {"url": url, "at": int(time.time() * 1000), "status": 0, "answer": f"{type(exc).__name__}: {exc}",
                   "ok": False}
    attempts: dict[str, Any] = getattr(request.app.state, "sync_attempts", None) or {}
    attempts[url] = attempt
    request.app.state.sync_attempts = attempts
    return attempt
