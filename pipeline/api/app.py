"""The HTTP API (FastAPI), with Inngest's shapes: event ingest, runs, and bulk cancellations.

It writes only to Kafka and reads only from tables fed by Kafka, so any number of API
instances can run side by side and none of them holds state that a restart could lose:

* ``POST /e/{event_key}`` produces events to ``events`` (flushed before answering, so a 200
  means the broker has the event);
* ``DELETE /v1/runs/{id}`` produces a cancel command to ``run-commands``; the run owner applies
  it, which keeps it the only writer of run state;
* ``POST``/``DELETE /v1/cancellations`` write bulk cancellation records to ``cancellations``,
  which every run owner reads whole;
* reads come from :class:`~pipeline.api.tables.RunTable` and :class:`~pipeline.api.tables.CancellationTable`.

Errors are ``{"error": <message>, "status": <code>}`` (plus ``details`` for field errors), as
Inngest's API answers them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter, make_asgi_app
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from ..config import Settings
from ..expr import ExprError, compile_expr
from ..kafka import topics as t
from ..kafka.client import admin_config, bootstrap, producer_config
from ..protocol.commands import cancel_command
from ..serde import BULK_CANCELLATION, EVENT, RUN_COMMAND, Serde, SerdeError
from ..serde.models import ENDED_STATUSES, Event, RunView, now_ms
from . import auth
from .browse import add_browse_routes
from .edge import ApiError, SafeJSONResponse, allowed_methods, answers, body, event_body_schema, has_lone_surrogate
from .recent_events import RecentEvents
from .tables import CancellationTable, RunTable

log = logging.getLogger("pipeline.api")
T = TypeVar("T")

MAX_FUTURE_MS = 5_000
"""``started_before`` may be at most this far in the future (clock skew between client and server)."""

EVENTS_INGESTED = Counter("pipeline_api_events_total", "events accepted by POST /e")
REQUESTS_REFUSED = Counter("pipeline_api_refused_total", "requests refused", ["reason"])


# -- errors ----------------------------------------------------------------------------------------------------


def error_body(status: int, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "status": status}
    if details is not None:
        body["details"] = details
    return body


def _field_errors(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic's errors as JSON-safe dicts, with ``loc`` prefixed (e.g. by the index in a batch)."""
    out = []
    for err in json.loads(exc.json(include_url=False)):
        err["loc"] = [*prefix, *err.get("loc", ())]
        err.pop("input", None)  # may be large, and echoes user data back
        out.append(err)
    return out


def _summary(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])


# -- request size limit -----------------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``limit`` bytes, by Content-Length and by bytes actually read.

    Checking only the header is not enough (chunked uploads have none, and a client can lie),
    so the receive channel is counted too and the read is cut off as soon as the limit is passed.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "invalid Content-Length")
                    return
                if declared > self.limit:
                    await self._refuse(send, 413, self._message())
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, 413, self._message())

    def _message(self) -> str:
        return f"request body larger than {self.limit} bytes"

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        REQUESTS_REFUSED.labels("too_large" if status == 413 else "bad_request").inc()
        body = json.dumps(error_body(status, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


# -- bulk cancellation requests (pure: unit-tested without a broker) ---------------------------------------------


def to_ms(value: Any) -> Any:
    """A time as epoch milliseconds: ints (and digit strings) are ms already; RFC3339 strings and datetimes convert.

    Naive datetimes are taken as UTC. Booleans and floats are refused rather than guessed at.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected an RFC3339 time or epoch milliseconds, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an RFC3339 time or epoch milliseconds: {value!r}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    raise ValueError("expected an RFC3339 time or epoch milliseconds")


TimeMs = Annotated[int, BeforeValidator(to_ms)]


class CancellationRequest(BaseModel):
    """The body of ``POST /v1/cancellations``; ``if`` is a CEL expression over ``event`` (the run's trigger)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    app_id: str = Field(min_length=1, max_length=512)
    function_id: str = Field(min_length=1, max_length=512)
    started_before: TimeMs
    started_after: TimeMs | None = None
    if_: str | None = Field(default=None, alias="if", max_length=16 * 1024)

    @field_validator("if_")
    @classmethod
    def _blank_if_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None


def validate_window(started_before: int, started_after: int | None, now: int) -> None:
    """Refuse windows that cannot mean what the caller wants; ValueError with a message for the 400.

    ``started_before`` may not be more than 5 s ahead of the server clock: a bulk cancellation
    applies to runs that have already started, and a far-future bound would silently keep
    cancelling new runs for as long as the rule lives.
    """
    if started_before < 0:
        raise ValueError("started_before must not be negative")
    if started_before > now + MAX_FUTURE_MS:
        raise ValueError(f"started_before is {started_before - now} ms in the future; "
                         f"at most {MAX_FUTURE_MS} ms is allowed")
    if started_after is not None:
        if started_after < 0:
            raise ValueError("started_after must not be negative")
        if started_after >= started_before:
            raise ValueError("started_after must be earlier than started_before")


def validate_if(source: str | None) -> None:
    """Compile the ``if`` now, so a bad expression is a 400 here and not a silent no-op in every run owner."""
    if source is not None:
        compile_expr(source, ("event",))


def cancellation_record(req: CancellationRequest, now: int, cancellation_id: str | None = None) -> dict[str, Any]:
    """The BulkCancellation Avro record for a validated request."""
    return {"id": cancellation_id or str(ULID()), "app_id": req.app_id, "function_id": req.function_id,
            "started_after": req.started_after, "started_before": req.started_before, "if_exp": req.if_,
            "created_at": now, "stopped_at": None}


def cancellation_view(record: dict[str, Any], cancelled_runs: int) -> dict[str, Any]:
    """The JSON face of a BulkCancellation (times in epoch ms, ``if_exp`` shown as ``if``)."""
    return {"id": record["id"], "app_id": record["app_id"], "function_id": record["function_id"],
            "started_after": record.get("started_after"), "started_before": record["started_before"],
            "if": record.get("if_exp"), "created_at": record["created_at"], "stopped_at": record.get("stopped_at"),
            "cancelled_runs": cancelled_runs}


# -- Kafka writes -------------------------------------------------------------------------------------------------


class Writer:
    """Produces records and awaits their delivery reports, so a 200 means "acknowledged by the broker".

    One producer serves every request. A background thread serves the producer's callbacks
    (``poll``) and hands each delivery report to the waiting request's event loop, so a request
    waits only for its own records (no global flush) and holds no worker thread while it waits,
    even when the broker is slow or away.
    """

    def __init__(self, producer: Producer, timeout: float = 30.0) -> None:
        self.producer = producer
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="api-producer-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    async def send(self, records: list[tuple[Any, ...]]) -> list[tuple[int, int]]:
        """Produce (topic, key, value[, partition]) records; returns their (partition, offset) or raises ApiError 503."""
        if not records:
            return []
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[tuple[int, int]]] = [loop.create_future() for _ in records]

        def report(fut: asyncio.Future[tuple[int, int]]) -> Callable[[Any, Any], None]:
            def settle(err: Any, where: tuple[int, int] | None) -> None:
                if fut.done():
                    return
                if err is not None:
                    fut.set_exception(ApiError(503, f"Kafka refused the write: {err}"))
                else:
                    fut.set_result(where)  # type: ignore[arg-type]

            def on_delivery(err: Any, msg: Any) -> None:  # runs on the poll thread
                where = None if err is not None else (msg.partition(), msg.offset())
                loop.call_soon_threadsafe(settle, err, where)
            return on_delivery

        try:
            for fut, record in zip(futures, records):
                topic, key, value = record[:3]
                partition = record[3] if len(record) > 3 else -1  # type: ignore[misc]
                self.producer.produce(topic, key=key.encode(), value=value, partition=partition,
                                      on_delivery=report(fut))
        except (BufferError, KafkaException) as exc:
            raise ApiError(503, f"cannot queue records for Kafka: {exc}") from exc
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), self.timeout))
        except TimeoutError:
            raise ApiError(503, "Kafka did not acknowledge the write in time") from None


class _RawAsgi:
    """Wraps an ASGI callable so that Starlette routes to it as an app, not as a request handler function."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


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


# -- the app ------------------------------------------------------------------------------------------------------


def create_app(settings: Settings, *, producer: Producer | None = None, run_wait_seconds: float = 2.0,
               ready_timeout: float = 10.0, registry: Any = None) -> FastAPI:
    """Build the API. The lifespan starts the Kafka-fed tables and stops them (and an owned producer) on shutdown.

    ``producer``: share one with the caller (``pipeline dev``); by default the app makes and owns one.
    ``run_wait_seconds``: how long ``GET``/``DELETE /v1/runs/{id}`` wait for an unknown run to show up
    in the table, because runs are created asynchronously after the event is accepted.
    ``ready_timeout``: how long a table-backed request waits for the initial catch-up before a 503.
    ``registry``: the served functions (``pipeline dev``), for the UI's function page and run replays.
    """
    servers = bootstrap(settings)
    serde = Serde()
    events_topic = settings.topic(t.EVENTS)
    commands_topic = settings.topic(t.RUN_COMMANDS)
    cancellations_topic = settings.topic(t.CANCELLATIONS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        auth.warn_if_open(settings, log)
        owned = producer is None
        # message.timeout.ms below the Writer's own timeout, so a failed write reports Kafka's reason.
        prod = producer if producer is not None else Producer(producer_config(servers, **{
            "client.id": "pipeline-api", "message.timeout.ms": 15000,
            "message.max.bytes": max(4 * 1024 * 1024, settings.max_event_bytes * 2)}))
        runs = RunTable(servers, settings.topic(t.RUNS), serde=serde)
        cancellations = CancellationTable(servers, cancellations_topic, serde=serde)
        writer = Writer(prod)
        writer.start()
        app.state.writer = writer
        app.state.runs = runs
        app.state.cancellations = cancellations
        recent = RecentEvents(servers, [events_topic, settings.topic(t.SYSTEM_EVENTS)])
        app.state.recent = recent
        counts: list[int] = []

        def partition_counts() -> list[int]:
            if not counts:
                admin = AdminClient(admin_config(servers))
                counts.extend([t.partition_count(admin, commands_topic),
                               t.partition_count(admin, settings.topic(t.CANCEL_INDEX))])
            return counts

        app.state.partition_counts = partition_counts
        runs.start()
        cancellations.start()
        recent.start()
        try:
            yield
        finally:
            runs.stop()
            cancellations.stop()
            recent.stop()
            writer.stop()
            if owned:
                await run_in_threadpool(prod.flush, 10)
            # Drop the references so an owned producer is destroyed now, not whenever the app object is.
            app.state.writer = None
            del writer, prod

    app = FastAPI(title="pipeline", version="0.1.0", lifespan=lifespan, default_response_class=SafeJSONResponse,
                  description="Inngest-compatible event, run and cancellation API backed by Kafka")
    app.add_middleware(BodySizeLimit, limit=settings.max_event_bytes)
    metrics_app = make_asgi_app()
    # Both /metrics and /metrics/ answer directly (a bare mount would redirect /metrics with a 307).
    app.add_route("/metrics", _RawAsgi(metrics_app), include_in_schema=False)
    app.mount("/metrics", metrics_app)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed", extra={"path": request.url.path, "status": exc.status, "error": exc.message})
        return SafeJSONResponse(error_body(exc.status, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # unknown paths (404) and methods (405) in the same shape as every other error
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = allowed_methods(request.app.routes, request.scope)
            if request.method == "OPTIONS" and allow:  # what a path serves (no CORS here: same-origin API)
                return Response(status_code=204, headers={"Allow": ", ".join(allow)})
            headers["Allow"] = ", ".join(allow)
        return SafeJSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                                headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback (it re-raises to the server); the client gets no detail.
        return SafeJSONResponse(error_body(500, "internal server error"), status_code=500)

    # -- helpers bound to this app ---------------------------------------------------------------------------

    def tables(request: Request) -> tuple[RunTable, CancellationTable]:
        return request.app.state.runs, request.app.state.cancellations

    async def ensure_ready(request: Request) -> tuple[RunTable, CancellationTable]:
        runs, cancellations = tables(request)
        for table in (runs, cancellations):
            if not table.ready.is_set():
                if not await poll_until(table.ready.is_set, ready_timeout):
                    reason = f": {table.error}" if table.error else ""
                    raise ApiError(503, f"the {table.name} table is still loading from Kafka{reason}")
        return runs, cancellations

    def require_signing_key(request: Request) -> None:
        if not auth.signing_key_ok(settings, request.headers.get("authorization")):
            REQUESTS_REFUSED.labels("unauthorized").inc()
            raise ApiError(401, "a valid 'Authorization: Bearer <signing key>' header is required")

    async def json_body(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > settings.max_event_bytes:  # the middleware already cuts these off; belt and braces
            raise ApiError(413, f"request body larger than {settings.max_event_bytes} bytes")
        try:
            payload = json.loads(raw)
        except RecursionError:  # a body of ~1000 nested [ or { fits in any size limit
            REQUESTS_REFUSED.labels("bad_json").inc()
            raise ApiError(400, "invalid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an int over Python's digit limit
            REQUESTS_REFUSED.labels("bad_json").inc()
            raise ApiError(400, f"invalid JSON: {exc}") from None
        if has_lone_surrogate(raw, payload):
            REQUESTS_REFUSED.labels("bad_json").inc()
            raise ApiError(400, "invalid JSON: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
        return payload

    async def find_run(runs: RunTable, run_id: str) -> dict[str, Any]:
        state = runs.get(run_id)
        if state is None and run_wait_seconds > 0:
            state = await poll_until(lambda: runs.get(run_id), run_wait_seconds)
        if state is None:
            raise ApiError(404, f"run {run_id} not found")
        return state

    async def write(request: Request, records: list[tuple[Any, ...]]) -> list[tuple[int, int]]:
        return await request.app.state.writer.send(records)

    add_browse_routes(app, settings=settings, registry=registry, ensure_ready=ensure_ready,
                      require_signing_key=require_signing_key, write=write, serde=serde)

    # -- health ----------------------------------------------------------------------------------------------

    @app.get("/healthz", responses={503: {"description": "tables still loading from Kafka"}})
    async def healthz(request: Request) -> JSONResponse:
        """200 once both tables have caught up with Kafka, so a load balancer only routes to a useful instance."""
        runs, cancellations = tables(request)
        report: dict[str, Any] = {"tables": {
            table.name: {"ready": table.ready.is_set(), "records": table.records_read,
                         "restore_seconds": table.restore_seconds, "error": table.error}
            for table in (runs, cancellations)}}
        if runs.ready.is_set() and cancellations.ready.is_set():
            return JSONResponse({"status": "ok", **report})
        return JSONResponse({"status": "starting", **report}, status_code=503)

    # -- events ----------------------------------------------------------------------------------------------

    @app.post("/e/{event_key}", responses=answers(400, 401, 413), openapi_extra=body(event_body_schema()))
    async def send_events(event_key: str, request: Request) -> dict[str, Any]:
        """Ingest one event or a list of them (Inngest's ``/e/{key}``); answers the ids in order."""
        if not auth.event_key_ok(settings, event_key):
            REQUESTS_REFUSED.labels("bad_event_key").inc()
            raise ApiError(401, "Event key not found")
        payload = await json_body(request)
        items = payload if isinstance(payload, list) else [payload]
        events: list[Event] = []
        errors: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            prefix: tuple[Any, ...] = (i,) if isinstance(payload, list) else ()
            if not isinstance(item, dict):
                errors.append({"loc": list(prefix), "msg": "an event must be a JSON object", "type": "type_error"})
                continue
            try:
                events.append(Event.model_validate(item).with_defaults())
            except ValidationError as exc:
                errors.extend(_field_errors(exc, prefix))
        if errors:
            REQUESTS_REFUSED.labels("invalid_event").inc()
            raise ApiError(400, f"invalid event: {_summary(errors)}", errors)
        records = []
        for ev in events:
            try:
                records.append((events_topic, ev.id, serde.encode(EVENT, ev.to_record())))
            except SerdeError as exc:
                raise ApiError(400, f"invalid event {ev.id}: {exc}") from None
        await write(request, records)
        EVENTS_INGESTED.inc(len(events))
        return {"ids": [ev.id for ev in events], "status": 200}

    # -- runs ------------------------------------------------------------------------------------------------

    @app.get("/v1/events/{event_id}/runs", responses=answers(401, 503))
    async def event_runs(event_id: str, request: Request) -> dict[str, Any]:
        """The runs an event started (empty while the matcher has not scheduled them yet)."""
        require_signing_key(request)
        runs, _ = await ensure_ready(request)
        return {"data": [RunView.from_state(s).model_dump() for s in runs.for_event(event_id)]}

    @app.get("/v1/runs/{run_id}", responses=answers(401, 404, 503))
    async def get_run(run_id: str, request: Request) -> dict[str, Any]:
        require_signing_key(request)
        runs, _ = await ensure_ready(request)
        return {"data": RunView.from_state(await find_run(runs, run_id)).model_dump()}

    @app.delete("/v1/runs/{run_id}", responses=answers(401, 404, 409, 503))
    async def cancel_run(run_id: str, request: Request) -> dict[str, Any]:
        """Ask the run's owner to cancel it. Answers once the command is in Kafka, before it is applied."""
        require_signing_key(request)
        runs, _ = await ensure_ready(request)
        state = await find_run(runs, run_id)
        if state["status"] in ENDED_STATUSES:
            raise ApiError(409, f"run {run_id} has already ended ({state['status']})")
        command = cancel_command(run_id, state["function_id"], "rest", None, now_ms())
        await write(request, [(commands_topic, run_id, serde.encode(RUN_COMMAND, command), runs.partitions[run_id])])
        return {"data": {"run_id": run_id, "status": "Cancelling"}}

    # -- bulk cancellations ----------------------------------------------------------------------------------

    @app.post("/v1/cancellations", responses=answers(400, 401, 413, 503),
              openapi_extra=body(CancellationRequest.model_json_schema(by_alias=True)))
    async def create_cancellation(request: Request) -> dict[str, Any]:
        """Cancel every active run of a function started within a window (and matching ``if``)."""
        require_signing_key(request)
        payload = await json_body(request)
        if not isinstance(payload, dict):
            raise ApiError(400, "the body must be a JSON object")
        try:
            req = CancellationRequest.model_validate(payload)
        except ValidationError as exc:
            errors = _field_errors(exc)
            raise ApiError(400, f"invalid cancellation: {_summary(errors)}", errors) from None
        now = now_ms()
        try:
            validate_window(req.started_before, req.started_after, now)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            validate_if(req.if_)
        except ExprError as exc:
            raise ApiError(400, f"invalid if expression: {exc}") from None
        _, cancellations = await ensure_ready(request)
        record = cancellation_record(req, now)
        [(partition, offset)] = await write(
            request, [(cancellations_topic, record["id"], serde.encode(BULK_CANCELLATION, record))])
        await poll_until(lambda: cancellations.applied(partition, offset), run_wait_seconds)
        return {"data": cancellation_view(record, 0)}

    @app.get("/v1/cancellations", responses=answers(401, 503))
    async def list_cancellations(request: Request) -> dict[str, Any]:
        require_signing_key(request)
        runs, cancellations = await ensure_ready(request)
        return {"data": [cancellation_view(r, runs.cancelled_by(r["id"])) for r in cancellations.all()]}

    @app.delete("/v1/cancellations/{cancellation_id}", responses=answers(401, 404, 503))
    async def stop_cancellation(cancellation_id: str, request: Request) -> dict[str, Any]:
        """Stop a bulk cancellation: runs it already cancelled stay cancelled; no further ones are."""
        require_signing_key(request)
        runs, cancellations = await ensure_ready(request)
        record = cancellations.get(cancellation_id)
        if record is None:
            raise ApiError(404, f"cancellation {cancellation_id} not found")
        if record.get("stopped_at") is None:
            record = {**record, "stopped_at": now_ms()}
            [(partition, offset)] = await write(
                request, [(cancellations_topic, cancellation_id, serde.encode(BULK_CANCELLATION, record))])
            await poll_until(lambda: cancellations.applied(partition, offset), run_wait_seconds)
        return {"data": cancellation_view(record, runs.cancelled_by(cancellation_id))}

    return app

