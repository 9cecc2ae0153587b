"""Ask an app to sync, as the Inngest server does: a ``PUT`` to its URL.

The SDK answers by posting its functions to the ``/fn/register`` of the server it is configured for
(``INNGEST_BASE_URL``, or ``INNGEST_DEV=<origin>``), and passes on that answer: ``{"message", "modified"}``
with 200, or 500 with the server's error. So a sync's result comes back through the app.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("pipeline.apps")

RETRY_EVERY_S = 1.0


@dataclass(frozen=True)
class SyncResult:
    """What the app answered to the ``PUT``."""

    url: str
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status == 200


def sync_app(url: str, timeout: float = 30.0, *, signed: bool = False) -> SyncResult:
    """``PUT`` the app's URL and return its answer (raises ``httpx.HTTPError`` when it cannot be reached).
    ``signed``: this runtime has a signing key, so it presents itself as a cloud server (the SDK then expects
    signed calls and syncs with its hashed key), else as a dev server."""
    response = httpx.put(url, headers={"X-Inngest-Server-Kind": "cloud" if signed else "dev"}, timeout=timeout)
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return SyncResult(url, response.status_code, body)


def sync_in_background(urls: list[str], server: str, stop: threading.Event, *,
                       signed: bool = False) -> threading.Thread:
    """``pipeline dev -u``: sync each app once it answers (it may start after dev), retrying every second."""

    def run() -> None:
        pending = list(urls)
        while pending and not stop.is_set():
            for url in list(pending):
                try:
                    result = sync_app(url, signed=signed)
                except httpx.HTTPError as exc:
                    log.debug("app not reachable yet", extra={"url": url, "error": str(exc)})
                    continue
                if result.ok:
                    log.info("app synced", extra={"url": url, "answer": result.body})
                    pending.remove(url)
                else:
                    log.warning("app sync failed (is the app's INNGEST_BASE_URL %s?)", server,
                                extra={"url": url, "status": result.status, "answer": result.body})
            stop.wait(RETRY_EVERY_S)

    thread = threading.Thread(target=run, name="app-sync", daemon=True)
    thread.start()
    return thread
