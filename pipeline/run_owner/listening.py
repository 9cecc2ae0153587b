"""The run owner's writes to the cancel join: a Waiting run's listener (``step.wait_for_event`` and
``step.invoke``, whose child it also starts), and the tombstones of listeners a run no longer needs.

Apart from :mod:`pipeline.run_owner.owner` so that the owner stays its state machine's driver; every record goes out
through the owner's emitter, in the transaction of the input that caused it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..kafka.emitter import Emitter
from ..protocol.errors import error_payload
from ..protocol.ids import derived_ulid, function_id
from ..protocol.joins import WaitNotRoutable, listeners_for, wait_listener
from ..protocol.keys import listener_record_key, partition_for
from ..protocol.sysevents import FUNCTION_INVOKED
from ..sdk.app import Registry
from ..sdk.function import Function
from ..serde import CANCEL_LISTENER, EVENT
from ..serde.models import event_dict_to_record
from . import state as st


def _ident(state: dict[str, Any]) -> str:
    """The id of a run's wait listener in the join: run id and step (a cancel_on listener's is the run id)."""
    return f"{state['run_id']}\x1e{state['pending_step']}"


class Listening:
    """Listener records for one owner: ``index_partitions`` is looked up lazily (first use)."""

    def __init__(self, registry: Registry, index_topic: str, events_topic: str,
                 index_partitions: Callable[[], int], retry_backoff_ms: int) -> None:
        self.registry = registry
        self.index_topic = index_topic
        self.events_topic = events_topic
        self._count = index_partitions
        self._partitions: int | None = None
        self.retry_backoff_ms = retry_backoff_ms

    def _partition(self, key: str) -> int:
        if self._partitions is None:
            self._partitions = self._count()
        return partition_for(key, self._partitions)

    def listen(self, tr: st.Transition, fn: Function, p: int, out: Emitter, now: int) -> st.Transition:
        """Register a Waiting run's listener with the join (a wait the matcher cannot signal fails the step)."""
        state = tr.state
        assert state is not None
        spec = json.loads(state["waiting_for"])
        if spec.get("invoke"):
            failed = self._invoke_child(spec, state, fn, out, now)
            if failed is not None:
                return failed
            state["waiting_for"] = json.dumps(spec)
        try:
            listener = wait_listener(fn, json.loads(state["event"]), state["run_id"], state["pending_step"],
                                     spec["event"], spec.get("if"), spec["since"], state["wake_at"])
        except WaitNotRoutable as exc:
            return self._fail_step(state, fn, "WaitNotRoutable", str(exc), now)
        if listener is None:
            return tr  # the condition can never hold for this run: it times out
        listener["owner_partition"] = p
        key = listener["join_key"]
        spec["join_key"] = key
        state["waiting_for"] = json.dumps(spec)
        out.send(self.index_topic, listener_record_key(key, _ident(state)), CANCEL_LISTENER, listener,
                 partition=self._partition(key))
        return tr

    def _fail_step(self, state: dict[str, Any], fn: Function, name: str, message: str, now: int) -> st.Transition:
        error = error_payload(message, name)
        return st.failed_attempt(st._bump(state, status="Running", wake_at=None, pending_step=None, waiting_for=None),
                                 error, fn.retries, now, backoff_ms=self.retry_backoff_ms, retriable=False,
                                 step_id=state["pending_step"])

    def _invoke_child(self, spec: dict[str, Any], state: dict[str, Any], fn: Function, out: Emitter,
                      now: int) -> st.Transition | None:
        """step.invoke: send ``inngest/function.invoked`` for the child (the matcher starts it whatever its
        triggers) and turn the wait into one for the child's ``function.finished`` with this correlation id.
        Returns the failed step's transition when no served function has that id."""
        invoke = spec["invoke"]
        target = self.registry.by_id.get(invoke["function_id"]) or \
            self.registry.by_id.get(function_id(fn.app_id, invoke['function_id']))
        step_id = state["pending_step"]
        if target is None:
            return self._fail_step(state, fn, "FunctionNotFound",
                                   f"step.invoke: function {invoke['function_id']!r} is not served by this deployment",
                                   now)
        correlation = f"{state['run_id']}.{step_id}"
        spec["if"] = f"async.data.invoke_correlation_id == {json.dumps(correlation)}"
        data = dict(invoke.get("data") or {})
        data["_inngest"] = {"fn_id": target.id, "invoke_correlation_id": correlation,
                            "parent_run_id": state["run_id"]}
        event_id = derived_ulid(spec["since"], "invoke", state["run_id"], step_id)
        event = {"id": event_id, "name": FUNCTION_INVOKED,
                 "data": data, "user": invoke.get("user") or {}, "ts": now, "v": None}
        out.send(self.events_topic, event_id, EVENT, event_dict_to_record(event))
        return None

    def unlisten_wait(self, state: dict[str, Any], out: Emitter) -> None:
        """Tombstone the wait listener of a run that stops waiting (timed out, or ended)."""
        found = st.waiting_listener(state)
        if found is not None:
            key = found[0]
            out.send(self.index_topic, listener_record_key(key, _ident(state)), None, None,
                     partition=self._partition(key))

    def unlisten_cancels(self, fn: Function, state: dict[str, Any], out: Emitter) -> None:
        """Tombstone an ended run's cancel listeners so the canceller's table (and the topic) forget them.

        A run cancelled by its only cancel rule writes none: the canceller tombstoned that listener in the
        transaction of the cancel command, so a second tombstone would be one more record per cancelled run for
        nothing (the seed's job cancels every run this way). With several rules the others are still registered.
        """
        if state.get("cancel_reason") == "cancel_on" and len(fn.cancels) == 1:
            return
        event = json.loads(state["event"])
        for listener in listeners_for(fn, event, state["run_id"], state["received_at"], state["queued_at"]):
            key = listener["join_key"]
            out.send(self.index_topic, listener_record_key(key, state["run_id"]), None, None,
                     partition=self._partition(key))
