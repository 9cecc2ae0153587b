"""The HTTP API (FastAPI), with Inngest's shapes: event ingest, runs, and bulk cancellations.

It writes only to Kafka and reads only from tables fed by Kafka, so any number of API
instances can run side by side and none of them holds state that a restart could lose:

* ``POST /e/{event_key}`` produces events to ``events`` (:mod:`.ingest`);
* ``/v1/runs`` reads runs and produces cancel commands and replays for the run owner, which stays
  the only writer of run state (:mod:`.runs`);
* ``/v1/cancellations`` writes bulk cancellation records, which every run owner reads whole
  (:mod:`.cancellations`);
* ``/v1/events`` and ``/v1/functions`` are what the dev UI browses (:mod:`.events`, :mod:`.functions`);
* ``/healthz``, ``/metrics`` and the dev UI are open (:mod:`.health`, :mod:`.metrics`, :mod:`.ui`).

This module only assembles them: one router per resource, the signing key a dependency of the
``/v1`` routers (:mod:`.auth`), errors in one shape (:mod:`.errors`), the body limit (:mod:`.bodies`),
and the Kafka-fed state started by the lifespan (:mod:`.lifespan`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from confluent_kafka import Producer
from fastapi import FastAPI

from ..config import Settings
from .apps import router as apps_router
from .bodies import BodySizeLimit
from .cancellations import router as cancellations_router
from .context import ApiConfig
from .dropped import router as dropped_router
from .edge import SafeJSONResponse
from .errors import install_error_handlers
from .events import router as events_router
from .functions import router as functions_router
from .health import router as health_router
from .ingest import router as ingest_router
from .lifespan import lifespan
from .metrics import mount_metrics
from .pending import router as pending_router
from .register import router as register_router
from .runs import router as runs_router
from .sources import router as sources_router
from .ui import install_ui

if TYPE_CHECKING:
    from ..sdk.app import Registry


class AppOptions(TypedDict, total=False):
    """The keyword options of :func:`create_app`, for callers that pass them through (``start_in_thread``)."""

    producer: Producer | None
    run_wait_seconds: float
    ready_timeout: float
    registry: Registry | None


def create_app(settings: Settings, *, producer: Producer | None = None, run_wait_seconds: float = 2.0,
               ready_timeout: float = 10.0, registry: Registry | None = None) -> FastAPI:
    """Build the API. The lifespan starts the Kafka-fed tables and stops them (and an owned producer) on shutdown.

    ``producer``: share one with the caller (``pipeline dev``); by default the app makes and owns one.
    ``run_wait_seconds``: how long ``GET``/``DELETE /v1/runs/{id}`` wait for an unknown run to show up
    in the table, because runs are created asynchronously after the event is accepted.
    ``ready_timeout``: how long a table-backed request waits for the initial catch-up before a 503.
    ``registry``: the served functions (``pipeline dev``), for the UI's function page and run replays.
    """
    config = ApiConfig.build(settings, run_wait_seconds=run_wait_seconds, ready_timeout=ready_timeout,
                             registry=registry)
    app = FastAPI(title="pipeline", version="0.1.0", lifespan=lifespan(config, producer),
                  default_response_class=SafeJSONResponse,
                  description="Inngest-compatible event, run and cancellation API backed by Kafka")
    app.state.config = config
    app.add_middleware(BodySizeLimit, limit=settings.max_event_bytes)
    mount_metrics(app)
    install_error_handlers(app)
    install_ui(app)
    for router in (runs_router, functions_router, events_router, health_router, ingest_router, cancellations_router,
                   sources_router, register_router, apps_router, dropped_router, pending_router):
        app.include_router(router)
    return app
