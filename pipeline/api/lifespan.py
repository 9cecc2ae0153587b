"""What an API app holds while it runs: the Kafka-fed tables, the producer and its writer, the event ring.

All of it starts in the lifespan and not in ``create_app``: building an app (for OpenAPI, for a test that
never serves a request) then costs no threads and no connections, and everything the lifespan started is
stopped on shutdown, the producer flushed if the app made it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from ..kafka import topics as t
from ..kafka.client import admin_config, bootstrap, producer_config
from ..kafka.store import StoreDir, state_dir
from ..protocol.ids import consumer_group
from ..serde.registry import confluent_reader
from .app_syncs import AppSyncTable
from .auth import warn_if_open
from .context import ApiConfig
from .dropped import DroppedEvents
from .recent_events import RecentEvents
from .tables import CancellationTable, RunTable
from .writer import Writer

log = logging.getLogger("pipeline.api")


def lifespan(config: ApiConfig, producer: Producer | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: ``producer`` is shared with the caller (``pipeline dev``), or made and owned here."""
    settings = config.settings
    servers = bootstrap(settings)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        warn_if_open(settings, log)
        owned = producer is None
        # message.timeout.ms below the Writer's own timeout, so a failed write reports Kafka's reason.
        extra: dict[str, Any] = {"client.id": "pipeline-api", "message.timeout.ms": 15000,
                                 "message.max.bytes": max(4 * 1024 * 1024, settings.max_event_bytes * 2)}
        prod = producer if producer is not None else Producer(producer_config(servers, **extra))
        # the run table lives on disk: one store per API instance (pipeline.kafka.store)
        store = StoreDir(state_dir(settings.state_dir), consumer_group(settings.topic_prefix, "api"),
                         settings.instance_id).open(settings.topic(t.RUNS), None)
        runs = RunTable(servers, settings.topic(t.RUNS), store=store, serde=config.serde)
        cancellations = CancellationTable(servers, config.cancellations_topic, serde=config.serde)
        app_syncs = AppSyncTable(servers, settings.topic(t.APP_SYNCS), serde=config.serde)
        app.state.app_syncs = app_syncs
        writer = Writer(prod)
        writer.start()
        app.state.writer = writer
        app.state.runs = runs
        app.state.cancellations = cancellations
        recent = RecentEvents(servers, [config.events_topic, settings.topic(t.SYSTEM_EVENTS)],
                              confluent=confluent_reader(settings, wait_s=0))
        app.state.recent = recent
        dropped = DroppedEvents(servers, settings.topic(t.DROPPED_EVENTS))  # rate limit and idempotency drops
        app.state.dropped = dropped
        counts: list[int] = []

        def partition_counts() -> list[int]:
            # Asked of Kafka on first use (a run replay), not at start: most apps never need them.
            if not counts:
                admin = AdminClient(admin_config(servers))
                counts.extend([t.partition_count(admin, config.commands_topic),
                               t.partition_count(admin, settings.topic(t.CANCEL_INDEX))])
            return counts

        app.state.partition_counts = partition_counts
        follower = None
        if config.registry is not None and config.registry.follower is None:
            from ..apps.store import follow_functions  # functions synced from apps over HTTP, followed

            follower = await run_in_threadpool(follow_functions, config.registry, settings)
        runs.start()
        cancellations.start()
        app_syncs.start()
        recent.start()
        dropped.start()
        try:
            yield
        finally:
            runs.stop()
            cancellations.stop()
            app_syncs.stop()
            recent.stop()
            dropped.stop()
            if follower is not None and config.registry is not None:
                await run_in_threadpool(follower.stop)
                config.registry.follower = None
            writer.stop()
            if owned:
                await run_in_threadpool(prod.flush, 10)
            # Drop the references so an owned producer is destroyed now, not whenever the app object is.
            app.state.writer = None
            app.state.sync_producer = None  # POST /fn/register's, if a sync made one
            del writer, prod

    return run
