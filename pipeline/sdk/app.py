"""Which functions a service runs: the :class:`Registry` of one or more clients, and ``--app`` loading."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .client import Inngest
from .function import Function
from .sources import Source

log = logging.getLogger("pipeline.registry")


class Registry:
    """Functions of one or more apps, looked up by full function id. Services take a registry.

    Functions come from code (``--app``: fixed for the process's life) and from apps synced over HTTP (the
    ``functions`` topic, followed by :mod:`pipeline.apps.store`, which calls :meth:`put` and :meth:`remove`).
    ``by_id`` is replaced, never changed in place, so a reader on another thread always sees a whole dict;
    services that index the functions (the matcher) rebuild their index in an :meth:`on_change` callback.
    A function defined in code keeps its id: a synced function with the same id is ignored, with a warning.
    """

    def __init__(self, apps: list[Inngest]) -> None:
        self.apps = apps
        by_id: dict[str, Function] = {}
        for app in apps:
            for fn in app.functions:
                by_id[fn.id] = fn
        self.by_id = by_id
        self._coded = frozenset(by_id)
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.follower: Any = None  # the functions-topic follower feeding this registry, once started

    @property
    def functions(self) -> list[Function]:
        return list(self.by_id.values())

    @property
    def sources(self) -> list[Source]:
        """The apps' sources (topics mapped to events), run by ``pipeline run source``."""
        return [source for app in self.apps for source in app.sources]

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the follower's thread) after every change of the synced functions."""
        self._listeners.append(callback)

    def put(self, functions: Iterable[Function], removed: Iterable[str] = ()) -> None:
        """Add or replace synced functions and drop ``removed`` ids (ids defined in code are left alone)."""
        with self._lock:
            by_id = dict(self.by_id)
            for fn_id in removed:
                if fn_id not in self._coded:
                    by_id.pop(fn_id, None)
            for fn in functions:
                if fn.id in self._coded:
                    log.warning("a synced function has the id of a function defined in code: ignored",
                                extra={"function": fn.id})
                    continue
                by_id[fn.id] = fn
            self.by_id = by_id
        for callback in self._listeners:
            callback()


def load_app(spec: str) -> Inngest:
    """Import ``module:attr`` (``examples.newsletter:app``) and return the Inngest client it names."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ValueError(f"--app {spec!r}: expected MODULE:ATTR, e.g. examples.newsletter:app")
    if os.getcwd() not in sys.path:  # console scripts do not put the working directory on sys.path
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj = getattr(module, attr or "app", None)
    if not isinstance(obj, Inngest):
        raise ValueError(f"--app {spec!r}: {module_name}.{attr or 'app'} is not a pipeline.Inngest client")
    return obj
