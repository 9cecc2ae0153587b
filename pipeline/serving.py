"""What inngest-py's framework ``serve()`` functions mean here, shared by :mod:`pipeline.fast_api`,
:mod:`pipeline.flask` and :mod:`pipeline.django`.

In Inngest, ``serve`` exposes the functions over HTTP so that the Inngest server can call them. Here the
functions run on this runtime's workers (``pipeline run worker --app MODULE:CLIENT``, or ``pipeline dev``), fed
by Kafka, so nothing needs to call into the web app. ``serve`` therefore only checks that the functions belong
to the client and mounts a read-only ``GET {serve_path}`` (default ``/api/inngest``) that lists them and says
where they run; the web app keeps all its own routes. ``PUT`` (Inngest's sync) answers 200 and does nothing;
``POST`` (a call from an Inngest server) answers 501, since no such server drives these functions.
"""

from __future__ import annotations

from typing import Any

from .sdk.client import Inngest
from .sdk.function import Function

SERVE_PATH = "/api/inngest"


def describe(client: Inngest, functions: list[Function]) -> dict[str, Any]:
    """What ``GET {serve_path}`` answers: the app, its functions and their triggers."""
    known = {fn.id for fn in client.functions}
    stray = [fn.id for fn in functions if fn.id not in known]
    if stray:
        raise ValueError(f"serve(): functions {stray} were not created by client {client.app_id!r}")
    return {"app_id": client.app_id, "runtime": "pipeline (Kafka)",
            "run_with": f"pipeline run worker --app MODULE:{client.app_id}",
            "functions": [{"id": fn.id, "name": fn.name, "triggers": [{"event": t.event} for t in fn.triggers] +
                           [{"cron": c.expression} for c in fn.crons],
                           "cancel": [c.spec.event for c in fn.cancels]} for fn in functions]}


def answers(client: Inngest, functions: list[Function]) -> dict[str, tuple[int, dict[str, Any]]]:
    """(status, JSON body) per HTTP method of the serve route."""
    return {
        "GET": (200, describe(client, functions)),
        "PUT": (200, {"ok": True, "note": "functions are registered with the client; nothing to sync"}),
        "POST": (501, {"error": "functions run on pipeline workers, not through this endpoint"}),
    }
