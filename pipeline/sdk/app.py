"""``App``: the set of functions a deployment serves (Inngest's client + serve in one object)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from .definitions import Cancel, Concurrency, DefinitionError, Timeouts, TriggerEvent
from .function import Function, build_function


class App:
    """A named group of functions. Function ids are ``<app id>-<fn_id>``."""

    def __init__(self, id: str) -> None:
        if not id or any(c.isspace() for c in id):
            raise ValueError(f"app id {id!r} must be a non-empty slug without spaces")
        self.id = id
        self._functions: dict[str, Function] = {}

    def create_function(self, *, fn_id: str, trigger: TriggerEvent | list[TriggerEvent], name: str | None = None,
                        cancel: list[Cancel] | Cancel | None = None, retries: int = 4,
                        timeouts: Timeouts | None = None,
                        concurrency: list[Concurrency] | Concurrency | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a handler. The definition is validated and compiled now."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            fn = build_function(self.id, fn_id, handler, trigger=trigger, name=name, cancel=cancel,
                                retries=retries, timeouts=timeouts, concurrency=concurrency)
            if fn.id in self._functions:
                raise DefinitionError(fn.id, "fn_id", fn_id, "is already registered in this app")
            self._functions[fn.id] = fn
            return handler

        return register

    @property
    def functions(self) -> list[Function]:
        return list(self._functions.values())

    def function(self, function_id: str) -> Function | None:
        return self._functions.get(function_id)


class Registry:
    """Functions of one or more apps, looked up by full function id. Services take a registry."""

    def __init__(self, apps: list[App]) -> None:
        self.apps = apps
        self.by_id: dict[str, Function] = {}
        for app in apps:
            for fn in app.functions:
                self.by_id[fn.id] = fn

    @property
    def functions(self) -> list[Function]:
        return list(self.by_id.values())


def load_app(spec: str) -> App:
    """Import ``module:attr`` (``examples.newsletter:app``) and return the App it names."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ValueError(f"--app {spec!r}: expected MODULE:ATTR, e.g. examples.newsletter:app")
    if os.getcwd() not in sys.path:  # console scripts do not put the working directory on sys.path
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj = getattr(module, attr or "app", None)
    if not isinstance(obj, App):
        raise ValueError(f"--app {spec!r}: {module_name}.{attr or 'app'} is not a pipeline.App")
    return obj
