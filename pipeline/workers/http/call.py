"""Call an app's function for one invocation, on the worker's event loop (httpx), and say what happened.

One invocation is one call, aimed at no step (``stepId=step``), plus a follow-up when the app plans steps
instead of running them: one ``StepPlanned`` is run at once (a call with its ``stepId``); several (a parallel
group) are run side by side, each in its own call, and reported together as one ``steps`` outcome, so the run
owner stores them all and then invokes the function exactly once more. Every way a call can fail (the app
down, a timeout, an answer not from an SDK) is a failed attempt: the run owner retries it with backoff, then
fails the run with the error.

A ``WaitForEvent`` for an event name the function's runs never waited for is learned first: the function's
record on the ``functions`` topic gains the name (acknowledged before the outcome goes out), and every
matcher following the topic signals that name from then on. The wait is reported only once every live
matcher has proven it applied that record (:mod:`pipeline.apps.applied`); the first wait on a name this worker
has not proven yet (learned by another worker, maybe still unproven) is proven against the topic's end. A
matcher lagging past ``PIPELINE_FUNCTIONS_APPLY_TIMEOUT_MS`` makes the invocation a failed attempt that names
it (retried with backoff), never a wait that could miss its event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ...protocol.errors import error_json, error_payload
from ...protocol.functions import with_wait
from ...protocol.invocations import outcome
from ...protocol.records import FunctionDef, StepOutcome
from ...sdk.synced import SyncedFunction
from .ops import Answer, answer_outcome, read_answer, step_entry, steps_outcome
from .request import ROOT_STEP, call_body, call_headers, call_url, encode_body

log = logging.getLogger("pipeline.worker.http")

CALL_TIMEOUT_S = float(os.environ.get("PIPELINE_HTTP_CALL_TIMEOUT_S", "300"))


def _now() -> int:
    return time.time_ns() // 1_000_000


class HttpInvoker:
    """Calls functions served over HTTP. ``learn_wait(record)`` stores a record with a new awaited name (or,
    given None, stores nothing) and proves every matcher applied it (the topic's end for None); it returns None
    once proven, else why not (blocking; run off the event loop). It may be None (tests without a broker)."""

    def __init__(self, signing_key: str | None,
                 learn_wait: Callable[[FunctionDef | None], str | None] | None = None,
                 timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.signing_key = signing_key
        self.learn_wait = learn_wait
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._proven: set[tuple[str, str]] = set()  # (function id, event name) every matcher is known to signal

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made on the event loop that uses it
            self._client = httpx.AsyncClient(timeout=self.timeout_s,
                                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=100))
        return self._client

    async def _call(self, fn: SyncedFunction, inv: Mapping[str, Any], step_id: str, *,
                    disable_immediate_execution: bool = False) -> Answer:
        body = encode_body(call_body(inv, fn.retries, disable_immediate_execution=disable_immediate_execution))
        url = call_url(fn.url, fn.id, step_id)
        try:
            response = await self._http().post(url, content=body,
                                               headers=call_headers(body, self.signing_key, int(time.time())))
        except httpx.HTTPError as exc:
            return Answer("error", error=error_payload(f"{type(exc).__name__} calling {url}: {exc}", "AppUnreachable"))
        return read_answer(response.status_code, response.headers, response.content, _now())

    async def run(self, fn: SyncedFunction, inv: Mapping[str, Any], worker: str) -> StepOutcome:
        """One invocation: the call, the planned steps if any, and the outcome."""
        started = _now()
        answer = await self._call(fn, inv, ROOT_STEP)
        planned = [op["id"] for op in answer.ops if op["op"] == "StepPlanned"] if answer.kind == "ops" else []
        if not planned:
            result = answer_outcome(inv, answer, started, _now(), worker)
            if result["kind"] == "wait" and result["wait"] is not None:
                problem = await self._learn(fn, json.loads(result["wait"])["event"])
                if problem is not None:  # reported now, the wait could miss its event: try again later
                    return outcome(inv, "error", started, _now(), worker,
                                   error=error_json(error_payload(problem, "WaitNotInEffect")))
            return result
        if len(planned) != len(answer.ops):
            message = f"planned steps mixed with other operations: {[op['op'] for op in answer.ops]}"
            return outcome(inv, "error", started, _now(), worker, retriable=False,
                           error=error_json(error_payload(message, "UnsupportedOperation")))
        if len(planned) == 1:
            follow = await self._call(fn, inv, planned[0])
            if follow.kind == "ops" and any(op["op"] == "StepPlanned" for op in follow.ops):
                return outcome(inv, "error", started, _now(), worker, error=error_json(error_payload(
                    f"step {planned[0]} was planned again instead of run", "StepNotRun")))
            return answer_outcome(inv, follow, started, _now(), worker)
        answers = await asyncio.gather(*(self._call(fn, inv, step_id, disable_immediate_execution=True)
                                         for step_id in planned))
        return steps_outcome(inv, [_entry(step_id, a) for step_id, a in zip(planned, answers, strict=True)],
                             started, _now(), worker)

    async def _learn(self, fn: SyncedFunction, event: str) -> str | None:
        """Make sure every matcher signals ``event`` for the function before the wait is reported: None once
        proven, else why not."""
        if self.learn_wait is None or fn.record is None or (fn.id, event) in self._proven:
            return None
        record = with_wait(fn.record, event)
        problem = await asyncio.to_thread(self.learn_wait, record)
        if record is not None:
            fn.record = record  # stored (whether proven or not): a retry proves it without writing it again
        if problem is None:
            self._proven.add((fn.id, event))
        return problem

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _entry(step_id: str, answer: Answer) -> dict[str, Any]:
    """A planned step's answer as a ``steps`` entry: its one ``StepRun``/``StepError``, or the call's error."""
    if answer.kind == "ops" and len(answer.ops) == 1:
        return step_entry(answer.ops[0], not answer.retriable)
    if answer.kind == "error":
        return {"id": step_id, "error": answer.error or {}, "retriable": answer.retriable}
    return {"id": step_id, "error": error_payload(f"planned step answered {answer.kind}: {answer.result!r}"[:2000],
                                                  "StepNotRun"), "retriable": True}
