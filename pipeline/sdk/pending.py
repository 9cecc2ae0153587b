"""``debounce`` and ``batch_events`` compiled at load: the options whose events wait in the run owner as a pending
record (one per function and key) and become one run later (:mod:`pipeline.run_owner.pending`).

Compiling here means a bad key or ``if`` fails when the app loads, naming the function and the field, and that
the owner only calls ready closures. The combinations Inngest refuses with batches are refused here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..expr import Expr, ExprError, ValueExpr, compile_expr
from .definitions import Batch, Debounce, DefinitionError
from .flow import optional_key

#: a batch's events must fit one run state, which is one Kafka record: the owner starts a batch early once its
#: events' JSON passes this share of the record limit (``PIPELINE_MAX_OUTPUT_BYTES``), leaving room for steps
BATCH_BYTES_SHARE = 0.5


@dataclass(frozen=True)
class CompiledDebounce:
    """A debounce with its key compiled over ``event`` (None: one pending debounce for the whole function)."""

    period_ms: int
    timeout_ms: int | None
    key: ValueExpr | None


@dataclass(frozen=True)
class CompiledBatch:
    """A batch with its key and ``if`` compiled over ``event``."""

    max_size: int
    timeout_ms: int
    key: ValueExpr | None
    if_expr: Expr | None

    def batches(self, event: dict[str, Any]) -> bool:
        """Whether the event joins a batch (``if`` holds, or there is none); otherwise it runs alone at once.
        An ``if`` that cannot be evaluated on the event counts as false (as a trigger expression does)."""
        if self.if_expr is None:
            return True
        try:
            return bool(self.if_expr.evaluate({"event": event}))
        except Exception:  # noqa: BLE001 - bad data in one event: it runs alone rather than failing
            return False


def key_value(key: ValueExpr | None, event: dict[str, Any]) -> str:
    """The JSON text of a flow key's value for ``event`` ("" with no key). A key that fails raises
    :class:`~pipeline.expr.EvalFailure` (the event is dead-lettered with the reason, never merged with others)."""
    if key is None:
        return ""
    return json.dumps(key.checked_value({"event": event}), sort_keys=True, default=str)


def compile_debounce(full_id: str, d: Debounce | None) -> CompiledDebounce | None:
    if d is None:
        return None
    if not isinstance(d, Debounce):
        raise DefinitionError(full_id, "debounce", d, "must be a pipeline.Debounce")
    return CompiledDebounce(period_ms=d.period_ms(), timeout_ms=d.timeout_ms(),
                            key=optional_key(full_id, "debounce key", d.key))


def compile_batch(full_id: str, b: Batch | None) -> CompiledBatch | None:
    if b is None:
        return None
    if not isinstance(b, Batch):
        raise DefinitionError(full_id, "batch_events", b, "must be a pipeline.Batch")
    if_expr = None
    if b.if_exp:
        try:
            if_expr = compile_expr(b.if_exp, ("event",))
        except ExprError as exc:
            raise DefinitionError(full_id, "batch_events if_exp", b.if_exp, str(exc)) from exc
    return CompiledBatch(max_size=b.max_size, timeout_ms=b.timeout_ms(),
                         key=optional_key(full_id, "batch_events key", b.key),
                         if_expr=if_expr)


#: what Inngest refuses or silently ignores together with batch_events: cancel (no single triggering event to
#: match), debounce and priority (refused by its server), singleton, rate_limit and idempotency (documented as
#: not working with batches, and ignored there). Refused here at load, by name.
BATCH_EXCLUDES = ("cancel", "debounce", "priority", "singleton", "rate_limit", "idempotency")


def refuse_with_batch(full_id: str, batch: Any, **options: Any) -> None:
    """Raise a DefinitionError naming every option given (not None, not empty) that may not go with a batch."""
    if batch is None:
        return
    clash = [name for name in BATCH_EXCLUDES if options.get(name) not in (None, [], (), "")]
    if clash:
        raise DefinitionError(full_id, "batch_events", batch,
                              f"cannot be combined with {', '.join(clash)} (as in Inngest)")
