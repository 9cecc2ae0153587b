"""``ctx.group.parallel``: several ``step.run`` calls side by side, each memoized on its own (inngest-py's name).

The callables are called once in *planning* mode: a step that completed in an earlier invocation returns its
stored output, a new one is collected instead of run. The collected steps then run concurrently in this
invocation (threads for a sync handler, ``asyncio.gather`` for an async one) and their outcomes go to the
run owner together; it stores every success and retries the run for a failure, so a retry runs only the
steps that failed. Once every step is stored, ``parallel`` returns their outputs in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .steps import Interrupt, LookaheadStop, NonRetriableError, Planned, Step, StepsCompleted, StepSync


@contextmanager
def _planning(step: StepSync | Step) -> Iterator[None]:
    if step.planning:
        raise NonRetriableError("group.parallel cannot be nested")
    step.planning = True
    try:
        yield
    finally:
        step.planning = False


def _entry(key: str, result: Any = None,
           exc: BaseException | None = None) -> tuple[str, str | None, BaseException | None]:
    if exc is not None:
        return key, None, exc
    try:
        return key, json.dumps(result, separators=(",", ":")), None
    except (TypeError, ValueError) as bad:
        return key, None, NonRetriableError(f"step {key!r} returned a value that is not JSON-serializable: {bad}")


def _run_one(plan: Planned) -> tuple[str, str | None, BaseException | None]:
    try:
        return _entry(plan.step_id, plan.fn(*plan.args))
    except Interrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - the step's failure is its outcome
        return _entry(plan.step_id, exc=exc)


async def _run_one_async(plan: Planned) -> tuple[str, str | None, BaseException | None]:
    try:
        result = plan.fn(*plan.args)
        if inspect.isawaitable(result):
            result = await result
        return _entry(plan.step_id, result)
    except Interrupt:
        raise
    except Exception as exc:  # noqa: BLE001
        return _entry(plan.step_id, exc=exc)


class GroupSync:
    """``ctx.group`` of a sync handler."""

    def __init__(self, step: StepSync) -> None:
        self._step = step

    def parallel(self, callables: Sequence[Callable[[], Any]]) -> tuple[Any, ...]:
        """Run the ``step.run`` calls made by ``callables`` side by side; their outputs, in order."""
        results: list[Any] = []
        plans: list[Planned] = []
        with _planning(self._step):
            for call in callables:
                try:
                    results.append(call())
                except Planned as plan:
                    plans.append(plan)
        if not plans:
            return tuple(results)
        if self._step.lookahead:
            raise LookaheadStop(plans[0].step_id)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(plans), thread_name_prefix="parallel") as pool:
            raise StepsCompleted(list(pool.map(_run_one, plans)))


class Group:
    """``ctx.group`` of an async handler: the callables return awaitables (``lambda: ctx.step.run(...)``)."""

    def __init__(self, step: Step) -> None:
        self._step = step

    async def parallel(self, callables: Sequence[Callable[[], Awaitable[Any]]]) -> tuple[Any, ...]:
        results: list[Any] = []
        plans: list[Planned] = []
        with _planning(self._step):
            for call in callables:
                try:
                    results.append(await call())
                except Planned as plan:
                    plans.append(plan)
        if not plans:
            return tuple(results)
        if self._step.lookahead:
            raise LookaheadStop(plans[0].step_id)
        raise StepsCompleted(list(await asyncio.gather(*(_run_one_async(p) for p in plans))))
