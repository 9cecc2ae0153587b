"""The API's own Prometheus counters, and ``/metrics`` serving every metric registered in the process.

The counters live in their own module because the middleware, the key checks and the routes all count
into them; a module of their own lets each import them without importing the app factory.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import Counter, make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

EVENTS_INGESTED = Counter("pipeline_api_events_total", "events accepted by POST /e")
REQUESTS_REFUSED = Counter("pipeline_api_refused_total", "requests refused", ["reason"])


class _RawAsgi:
    """Wraps an ASGI callable so that Starlette routes to it as an app, not as a request handler function.

    Starlette treats a plain function endpoint as ``request -> response``; prometheus' ASGI app is a plain
    function, so without this wrapper it would be called with the wrong arguments.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def mount_metrics(app: FastAPI) -> None:
    """Serve ``/metrics`` and ``/metrics/`` directly (a bare mount would answer ``/metrics`` with a 307).

    The route is built as a :class:`~starlette.routing.Route` (whose endpoint may be any callable, an ASGI
    app included) rather than through ``add_route``, whose signature only admits request handlers.
    """
    metrics_app = make_asgi_app()
    app.router.routes.append(Route("/metrics", endpoint=_RawAsgi(metrics_app), include_in_schema=False))
    app.mount("/metrics", metrics_app)
