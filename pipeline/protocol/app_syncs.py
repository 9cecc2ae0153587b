"""The ``app-syncs`` topic's record: how an app's last sync (``POST /fn/register``) ended, whoever started it.

A sync reaches this API from the app itself (after a ``PUT`` from ``pipeline apps sync``, ``pipeline dev -u``,
the dev UI or anyone), so its result is kept where every API instance reads it, across restarts: one record per
app on a compacted topic, the refusal's problems included. Pure: no Kafka here.
"""

from __future__ import annotations

from typing import Any

from .records import AppSync


def sync_key(body: Any) -> tuple[str, str]:
    """The app id and URL a sync body names, as far as it names them (either SDK's spelling; empty if not)."""
    if not isinstance(body, dict):
        return "", ""
    app_id = body.get("appName") or body.get("appname") or body.get("app_name")
    url = body.get("url")
    return (app_id if isinstance(app_id, str) else ""), (url if isinstance(url, str) else "")


def sync_record(body: Any, *, at: int, status: int, modified: bool = False, functions: int = 0,
                problems: list[str] | None = None) -> AppSync | None:
    """The record of one sync's result, or None when the body names neither an app nor a URL (nothing to key
    it by: a request that is not a sync at all)."""
    app_id, url = sync_key(body)
    if not app_id and not url:
        return None
    sdk = body.get("sdk") if isinstance(body, dict) else None
    return {"app_id": app_id, "url": url, "at": at, "ok": status == 200, "status": status, "modified": modified,
            "functions": functions, "problems": list(problems or []), "sdk": sdk if isinstance(sdk, str) else ""}


def record_key(record: AppSync) -> str:
    """The topic key: the app id, or its URL when the sync named no app."""
    return record["app_id"] or record["url"]
