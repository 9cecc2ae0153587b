"""``Inngest``: the client, under inngest-py's name and arguments, so ported code changes only its import.

It holds the app's functions (``@client.create_function(...)`` returns the :class:`Function`) and sends events
straight to Kafka (``client.send`` / ``send_sync``). Options of inngest-py that this runtime does not build yet
are refused when the function is defined, with an error that names them, rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..protocol.ids import function_id
from .definitions import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    DefinitionError,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from .function import Function, build_function
from .pending import refuse_with_batch
from .sources import Source, SourceError, ValueFormat

FAILED = "inngest/function.failed"


class Inngest:
    """A named group of functions (``app_id``); function ids are ``<app_id>-<fn_id>``.

    ``logger`` is the base of ``ctx.logger`` for this app's functions. ``is_production``, ``event_key``,
    ``signing_key``, ``env``, ``api_base_url`` and ``event_api_base_url`` are accepted for compatibility: here
    events go to Kafka (``PIPELINE_*`` settings), and the HTTP API's keys are ``PIPELINE_EVENT_KEY`` and
    ``PIPELINE_SIGNING_KEY``.
    """

    def __init__(self, *, app_id: str, logger: logging.Logger | None = None, is_production: bool | None = None,
                 event_key: str | None = None, signing_key: str | None = None, env: str | None = None,
                 api_base_url: str | None = None, event_api_base_url: str | None = None,
                 middleware: list[Any] | None = None) -> None:
        if not app_id or any(c.isspace() for c in app_id):
            raise ValueError(f"app_id {app_id!r} must be a non-empty slug without spaces")
        if middleware:
            raise ValueError("Inngest(middleware=...) is not supported yet by pipeline")
        self.app_id = app_id
        self.logger = logger
        self.is_production = is_production
        self._functions: dict[str, Function] = {}
        self.sources: list[Source] = []
        self._producer: Any = None  # with _serde and _events_topic, made by _sender() at the first send
        self._serde: Any = None
        self._events_topic = ""
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return self.app_id

    # -- functions -----------------------------------------------------------------------------------------

    def create_function(self, *, fn_id: str, trigger: TriggerEvent | TriggerCron | list[TriggerEvent | TriggerCron],
                        name: str | None = None,
                        cancel: list[Cancel] | Cancel | None = None, retries: int = 4,
                        timeouts: Timeouts | None = None, concurrency: list[Concurrency] | Concurrency | None = None,
                        on_failure: Callable[..., Any] | None = None,
                        rate_limit: RateLimit | None = None, idempotency: str | None = None,
                        throttle: Throttle | None = None, priority: Priority | None = None,
                        singleton: Singleton | None = None,
                        debounce: Debounce | None = None, batch_events: Batch | None = None,
                        ) -> Callable[[Callable[..., Any]], Function]:
        """Decorator: validate and compile the definition now and return the :class:`Function`.

        ``on_failure`` is a handler run once the function has failed for good, with the
        ``inngest/function.failed`` event as ``ctx.event`` (``data.error``, ``data.event``, ``data.run_id``):
        as in Inngest, it is a function of its own, ``<fn_id>-failure``, triggered by that event."""
        full_id = function_id(self.app_id, fn_id)
        refuse_with_batch(full_id, batch_events, cancel=cancel, debounce=debounce, rate_limit=rate_limit,
                          idempotency=idempotency, priority=priority, singleton=singleton)

        def register(handler: Callable[..., Any]) -> Function:
            fn = build_function(self.app_id, fn_id, handler, trigger=trigger, name=name, cancel=cancel,
                                retries=retries, timeouts=timeouts, concurrency=concurrency, logger=self.logger,
                                rate_limit=rate_limit, idempotency=idempotency, throttle=throttle, priority=priority,
                                singleton=singleton, debounce=debounce, batch_events=batch_events)
            if fn.id in self._functions:
                raise DefinitionError(fn.id, "fn_id", fn_id, "is already registered in this app")
            failure = None
            if on_failure is not None:
                failure = build_function(
                    self.app_id, f"{fn_id}-failure", on_failure, name=f"{name or fn_id} (failure)",
                    trigger=TriggerEvent(event=FAILED, expression=f"event.data.function_id == {fn.id!r}"),
                    retries=retries, logger=self.logger)
            self._functions[fn.id] = fn
            if failure is not None:
                self._functions[failure.id] = failure
            return fn

        return register

    @property
    def functions(self) -> list[Function]:
        return list(self._functions.values())

    # -- sources -------------------------------------------------------------------------------------------

    def create_source(self, source_id: str, *, topic: str, name: str, data: str = "record.value",
                      id: str | None = None, if_exp: str | None = None,
                      value_format: ValueFormat = "auto") -> Source:
        """Map the records of ``topic`` (a topic you already have) to events; ``pipeline run source`` (and
        ``pipeline dev``) runs it. ``name``, ``data``, ``id`` and ``if_exp`` are CEL over ``record``: see
        :mod:`pipeline.sdk.sources`. The expressions are checked now, so a bad one fails the app's load."""
        source = Source(source_id=source_id, topic=topic, name=name, data=data, id=id, if_exp=if_exp,
                        value_format=value_format)
        if any(s.source_id == source_id for s in self.sources):
            raise SourceError(f"source id {source_id!r} is already registered in this app")
        self.sources.append(source)
        return source

    def function(self, function_id: str) -> Function | None:
        return self._functions.get(function_id)

    # -- events --------------------------------------------------------------------------------------------

    def send_sync(self, events: Any) -> list[str]:
        """Produce one event or a list to the events topic (acks=all) and return their ids, in order.

        Events get an id and a ts when they have none; resending an id starts no second run."""
        from ..serde import EVENT
        from ..serde.models import Event

        items = events if isinstance(events, list) else [events]
        records = [(e if isinstance(e, Event) else Event.model_validate(e)).with_defaults() for e in items]
        with self._lock:
            producer, serde, topic = self._sender()
            failures: list[str] = []
            for ev in records:
                producer.produce(topic, key=ev.id, value=serde.encode(EVENT, ev.to_record()),
                                 on_delivery=lambda err, _msg: failures.append(str(err)) if err else None)
            left = producer.flush(30)
        if failures or left:
            raise RuntimeError(f"events not delivered: {failures[:3] or f'{left} timed out'}")
        return [ev.id for ev in records]

    def _sender(self) -> tuple[Any, Any, str]:
        """The producer, serde and events topic, made at the first send from the ``PIPELINE_*`` settings."""
        if self._producer is None:
            from confluent_kafka import Producer

            from ..config import Settings
            from ..kafka import topics as t
            from ..kafka.client import bootstrap, producer_config
            from ..serde import Serde

            settings = Settings()
            self._serde, self._events_topic = Serde(), settings.topic(t.EVENTS)
            linger: dict[str, Any] = {"linger.ms": 1}
            self._producer = Producer(producer_config(bootstrap(settings), **linger))
        return self._producer, self._serde, self._events_topic

    async def send(self, events: Any) -> list[str]:
        """:meth:`send_sync` without blocking the event loop."""
        return await asyncio.to_thread(self.send_sync, events)
