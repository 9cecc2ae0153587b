"""``/v1/functions``: what the dev UI lists as functions.

The API knows a function's definition only when it serves an app (``pipeline dev --app``: the registry);
any other function still shows up, by id alone, once it has runs in the runs table, so a standalone API
lists everything that has run. Needs the signing key (the router's dependency).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from .auth import signed_router
from .context import api_config, ensure_ready
from .edge import answers
from .flow_settings import flow_settings

router = signed_router()



@router.get("/v1/functions", responses=answers(401, 503))
async def list_functions(request: Request) -> dict[str, Any]:
    """The served functions (with ``pipeline dev``) and every function that has runs, with counts."""
    registry = api_config(request).registry
    runs, _ = await ensure_ready(request)
    counts = runs.function_counts()
    out = []
    for fn in (registry.functions if registry is not None else []):
        out.append({"id": fn.id, "app_id": fn.app_id, "fn_id": fn.fn_id, "name": fn.name,
                    "triggers": [tr.event for tr in fn.triggers] + [f"cron {c.expression}" for c in fn.crons],
                    "cancel": [{"event": c.spec.event, "if": c.spec.expression()} for c in fn.cancels],
                    "concurrency": [{"limit": c.limit, "key": c.key.source if c.key else None}
                                    for c in fn.concurrency],
                    "flow": flow_settings(fn), "runs": counts.get(fn.id, 0)})
    known = {f["id"] for f in out}
    out += [{"id": fid, "app_id": None, "fn_id": None, "name": fid, "triggers": [], "cancel": [], "concurrency": [],
             "flow": {}, "runs": n}
            for fid, n in sorted(counts.items()) if fid not in known]
    return {"data": out}
