"""``GET /v1/apps``: the apps synced over HTTP, for the dev UI and operators: each app's URL, SDK, last sync and
functions (from the ``functions`` topic, as this API follows it). Needs the signing key (the router's dependency).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .auth import signed_router
from .context import api_config
from .edge import answers

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
    return {"data": sorted(apps.values(), key=lambda a: -a["synced_at"])}
