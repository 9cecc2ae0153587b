"""What a request handler needs from its app: the per-app configuration, the Kafka-fed tables and the writer.

The routers are module-level and shared by every app that :func:`~pipeline.api.app.create_app` builds (``pipeline
dev`` and the tests build several in one process), so they cannot close over one app's settings. Instead
``create_app`` puts an :class:`ApiConfig` on ``app.state`` and the lifespan adds the tables, the writer and the
recent-events ring; the helpers here read them back from the request, typed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request

from ..config import Settings
from ..kafka import topics as t
from ..serde import Serde
from .edge import ApiError
from .recent_events import RecentEvents
from .tables import CancellationTable, RunTable
from .writer import Outgoing, Writer

if TYPE_CHECKING:
    from ..sdk.app import Registry

T = TypeVar("T")


@dataclass(frozen=True)
class ApiConfig:
    """One app's settings, resolved once when the app is built rather than on every request.

    ``run_wait_seconds``: how long ``GET``/``DELETE /v1/runs/{id}`` wait for an unknown run to show up
    in the table, because runs are created asynchronously after the event is accepted.
    ``ready_timeout``: how long a table-backed request waits for the initial catch-up before a 503.
    ``registry``: the served functions (``pipeline dev``), for the UI's function page and run replays.
    """

    settings: Settings
    serde: Serde
    run_wait_seconds: float
    ready_timeout: float
    registry: Registry | None
    events_topic: str
    commands_topic: str
    cancellations_topic: str

    @classmethod
    def build(cls, settings: Settings, *, run_wait_seconds: float, ready_timeout: float,
              registry: Registry | None) -> ApiConfig:
        return cls(settings=settings, serde=Serde(), run_wait_seconds=run_wait_seconds, ready_timeout=ready_timeout,
                   registry=registry, events_topic=settings.topic(t.EVENTS),
                   commands_topic=settings.topic(t.RUN_COMMANDS), cancellations_topic=settings.topic(t.CANCELLATIONS))


def api_config(request: Request) -> ApiConfig:
    """The configuration of the app serving ``request`` (set by ``create_app``, so present without a lifespan)."""
    config: ApiConfig = request.app.state.config
    return config


def tables(request: Request) -> tuple[RunTable, CancellationTable]:
    """The two Kafka-fed tables, whether or not they have caught up yet (``/healthz`` reports either way)."""
    runs: RunTable = request.app.state.runs
    cancellations: CancellationTable = request.app.state.cancellations
    return runs, cancellations


def recent_ring(request: Request) -> RecentEvents:
    """The ring of the newest events and system events that the lifespan tails."""
    recent: RecentEvents = request.app.state.recent
    return recent


def partition_counts(request: Request) -> list[int]:
    """[run-commands partitions, cancel-index partitions], asked of Kafka once per app (run replays need them)."""
    counts: Callable[[], list[int]] = request.app.state.partition_counts
    return counts()


async def poll_until(check: Callable[[], T], timeout: float, interval: float = 0.025) -> T:
    """Re-check ``check`` on the event loop until truthy or ``timeout``; returns its last value.

    Polling (instead of blocking on the table's condition in a worker thread) keeps a burst of
    requests for unknown runs, each waiting up to seconds, from exhausting the thread pool.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(interval)


async def ensure_ready(request: Request) -> tuple[RunTable, CancellationTable]:
    """The tables once both have caught up with Kafka, or a 503 after ``ready_timeout``.

    Called inside the handlers, not declared as a dependency: each handler asks at the point it always has (a
    bulk cancellation validates its body first), so which error a bad request meets first stays the same.
    """
    runs, cancellations = tables(request)
    ready_timeout = api_config(request).ready_timeout
    for table in (runs, cancellations):
        if not table.ready.is_set() and not await poll_until(table.ready.is_set, ready_timeout):
            reason = f": {table.error}" if table.error else ""
            raise ApiError(503, f"the {table.name} table is still loading from Kafka{reason}")
    return runs, cancellations


async def find_run(request: Request, runs: RunTable, run_id: str) -> dict[str, Any]:
    """A run's state, waiting up to ``run_wait_seconds`` for one the matcher is still creating; else a 404."""
    state = runs.get(run_id)
    wait = api_config(request).run_wait_seconds
    if state is None and wait > 0:
        state = await poll_until(lambda: runs.get(run_id), wait)
    if state is None:
        raise ApiError(404, f"run {run_id} not found")
    return state


async def write(request: Request, records: Sequence[Outgoing], *, positions: bool = True) -> list[tuple[int, int]]:
    """Produce ``records`` with the app's writer and return their (partition, offset) once acknowledged ([] with
    ``positions=False``: the acknowledgement only)."""
    writer: Writer = request.app.state.writer
    return await writer.send(records, positions=positions)
