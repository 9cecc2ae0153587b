"""Which functions a service runs: the :class:`Registry` of one or more clients, and ``--app`` loading."""

from __future__ import annotations

import importlib
import os
import sys

from .client import Inngest
from .function import Function
from .sources import Source


class Registry:
    """Functions of one or more apps, looked up by full function id. Services take a registry."""

    def __init__(self, apps: list[Inngest]) -> None:
        self.apps = apps
        self.by_id: dict[str, Function] = {}
        for app in apps:
            for fn in app.functions:
                self.by_id[fn.id] = fn

    @property
    def functions(self) -> list[Function]:
        return list(self.by_id.values())

    @property
    def sources(self) -> list[Source]:
        """The apps' sources (topics mapped to events), run by ``pipeline run source``."""
        return [source for app in self.apps for source in app.sources]


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
