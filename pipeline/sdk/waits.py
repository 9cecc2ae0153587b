"""Which events a function may wait for, read from its module's source when the app loads.

The matcher must know which event names to signal to the join before any run waits: an event of a
name it did not know would pass unseen, and a wait that began just before could miss it. So
``step.wait_for_event`` calls are found statically, in the source of the module that defines the handler
(helpers in the same module count). ``event=`` must be a string literal there; ``if_exp=`` may be anything,
but only a literal one gets a keyed join (see :func:`pipeline.protocol.joins.wait_listener`).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class WaitNotDeclared(ValueError):
    """A ``wait_for_event`` call whose event name is not a string literal (raised at load time)."""


@dataclass(frozen=True)
class DeclaredWait:
    """One ``wait_for_event`` call: its event name and its ``if_exp`` when that is a literal (None otherwise;
    ``dynamic`` says a non-literal one was passed)."""

    event: str
    if_exp: str | None
    dynamic: bool = False
    invoke: bool = False  # step.invoke / invoke_by_id: a wait for the child's function.finished


INVOKED_FINISHED = DeclaredWait("inngest/function.finished", None, invoke=True)


def declared_waits(handler: Callable[..., Any]) -> list[DeclaredWait]:
    """The ``wait_for_event`` calls in the handler's module (or its own source, if the module's is unavailable).

    A module is scanned once for all the functions it defines: the scan is cached by source text (an app of
    1,000 functions in one module parsed that module 1,000 times), so an edited and reloaded module is scanned
    again. A refused call still raises for every function of the module, with the same message."""
    source = _source(handler)
    if source is None:
        return []
    found, problem = _scan(source)
    if problem is not None:
        raise WaitNotDeclared(problem)
    return list(found)


@lru_cache(maxsize=256)
def _scan(source: str) -> tuple[tuple[DeclaredWait, ...], str | None]:
    """The calls found in ``source``, or the first refused call's message (in ``ast.walk`` order)."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return (), None
    found: list[DeclaredWait] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("wait_for_event", "invoke", "invoke_by_id")):
            continue
        if node.func.attr != "wait_for_event":
            if INVOKED_FINISHED not in found:
                found.append(INVOKED_FINISHED)
            continue
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        event = kwargs.get("event")
        if not (isinstance(event, ast.Constant) and isinstance(event.value, str)):
            return (), (f"line {node.lineno}: wait_for_event(event=...) must be a string literal, so "
                        "that the matcher knows which events to watch before any run waits")
        cond = kwargs.get("if_exp")
        literal = cond.value if isinstance(cond, ast.Constant) and isinstance(cond.value, str) else None
        wait = DeclaredWait(event.value, literal, dynamic=cond is not None and literal is None
                            and not (isinstance(cond, ast.Constant) and cond.value is None))
        if wait not in found:
            found.append(wait)
    return tuple(found), None


def _source(handler: Callable[..., Any]) -> str | None:
    """The text of the handler's module (else of the handler itself), as read; :func:`_scan` dedents it."""
    module = inspect.getmodule(handler)
    for target in (module, handler):
        if target is None:
            continue
        try:
            return inspect.getsource(target)
        except (OSError, TypeError):
            continue
    return None
