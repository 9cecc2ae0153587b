"""What a handler receives: ``ctx.event``, ``ctx.events``, ``ctx.run_id``, ``ctx.attempt``, ``ctx.logger``, ``ctx.step``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .steps import AsyncStep, Step


class EventView(dict):
    """The triggering event: a dict (``ctx.event["data"]``) that also allows ``ctx.event.data``/``.name``/``.id``."""

    def __getattr__(self, item: str) -> Any:
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None


@dataclass
class Context:
    """The run context passed to every handler invocation."""

    event: EventView
    events: list[EventView]
    run_id: str
    attempt: int
    logger: logging.Logger
    step: Step | AsyncStep
    function_id: str
