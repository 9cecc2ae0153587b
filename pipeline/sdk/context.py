"""What a handler receives: ``ctx.event``, ``ctx.events``, ``ctx.run_id``, ``ctx.attempt``, ``ctx.logger``,
``ctx.step``, ``ctx.group``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .group import Group, GroupSync
from .steps import Step, StepSync


class EventView(dict[str, Any]):
    """The triggering event: a dict (``ctx.event["data"]``) that also allows ``ctx.event.data``/``.name``/``.id``."""

    def __getattr__(self, item: str) -> Any:
        try:
            return self[item]
        except KeyError:
            raise AttributeError(item) from None


class ReplayAwareLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``ctx.logger``: silent while the handler replays steps that completed in an earlier invocation.

    A handler runs again from the top for every step, so a plain logger would repeat each line once per
    later step. Lines are let through once the handler has passed every memoized step (as inngest-py does).
    """

    def __init__(self, logger: logging.Logger, step: StepSync | Step) -> None:
        super().__init__(logger, {})
        self._step = step
        self.held: list[tuple[int, object, tuple[Any, ...], dict[str, Any]]] = []

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._step.replaying:
            return
        if self._step.lookahead:  # said only if the look-ahead pass is used (else the next invocation says it)
            self.held.append((level, msg, args, kwargs))
            return
        super().log(level, msg, *args, **kwargs)

    def release(self) -> None:
        """Say the lines a look-ahead pass held back, now that its result is used."""
        held, self.held = self.held, []
        for level, msg, args, kwargs in held:
            super().log(level, msg, *args, **kwargs)


@dataclass
class Context:
    """The run context passed to every handler invocation."""

    event: EventView
    events: list[EventView]
    run_id: str
    attempt: int
    logger: logging.Logger | ReplayAwareLogger
    step: StepSync | Step
    function_id: str
    group: GroupSync | Group  # ctx.group.parallel


ContextSync = Context  # inngest-py's name for the context of sync handlers: one class serves both here
