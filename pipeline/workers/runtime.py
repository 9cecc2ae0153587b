"""Where a worker's handlers run: a thread pool for sync handlers and one event loop for async ones.

Kept apart from the worker's Kafka loop so that the loop only decides *what* runs and records outcomes, while
this decides *where*: one event loop for the worker's life (async clients that user code creates keep
working across invocations) and a bounded pool of threads, both made at first use.

The pool is a queue and long-lived threads rather than a ``ThreadPoolExecutor``: the worker needs no future
per call (a sync handler's outcome is sent from its own thread), and the executor's per-call bookkeeping (a
``Future`` with its ``Condition``, the work item, the idle ``Semaphore`` written in Python) was a tenth of a
worker's CPU in the seed job. A thread is added when every started one is busy, up to the limit, as the
executor does; a thread ends only at the shutdown, or at the interpreter's exit: the threads are not daemons
(the exit waits for the calls running), so, as the executor does, an exit hook ends the idle ones even when the
worker never reached :meth:`HandlerRuntime.shutdown` (its loop failed): else the process would never exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("pipeline.worker")

CANCEL_WAIT_SECONDS = 2.0  # at the stop, for async handlers cancelled after the drain wait to unwind


class HandlerRuntime:
    """Runs handler calls side by side: ``run_sync`` on the pool, ``run_async`` on the event loop."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._calls: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._unfinished = 0  # calls queued or running: a thread more is started while they outnumber the threads
        self._started = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run_sync(self, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn(*args)`` on a pool thread. An exception it lets out is logged (the worker's own
        ``_run_sync`` turns every handler error into an outcome before that)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler runtime is shut down")
            self._unfinished += 1
            grow = self._unfinished > self._started and self._started < self.threads
            if grow:
                self._started += 1
                name = f"handler_{self._started - 1}"
        self._calls.put((fn, args))
        if grow:
            if name == "handler_0":
                try:  # run before the interpreter joins non-daemon threads (atexit handlers run after that)
                    threading._register_atexit(self._end_threads)  # type: ignore[attr-defined]
                except RuntimeError:  # the interpreter is exiting already
                    pass
            threading.Thread(target=self._serve, name=name).start()  # not a daemon: the exit waits for its call

    def _serve(self) -> None:
        calls = self._calls
        while True:
            call = calls.get()
            if call is None:
                return
            fn, args = call
            try:
                fn(*args)
            except BaseException:  # a pool thread outlives any call
                log.exception("a handler call escaped the worker")
            finally:
                with self._lock:
                    self._unfinished -= 1

    def _end_threads(self) -> None:
        """Drop the sync calls not started; each thread ends after the call it is running (once only)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        while True:
            try:
                if self._calls.get_nowait() is not None:
                    with self._lock:
                        self._unfinished -= 1
            except queue.Empty:
                break
        for _ in range(started):
            self._calls.put(None)

    def run_async(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="handler-loop", daemon=True)
            self._thread.start()
        asyncio.run_coroutine_threadsafe(coro, self._loop)

    def shutdown(self) -> None:
        """Drop sync calls not started, cancel the async handlers still running (past the worker's drain wait),
        then stop the loop. The worker, already stopping, takes their ``CancelledError`` for the stop it is: no
        outcome, the offset stays uncommitted and the invocation runs again elsewhere (not a failed attempt)."""
        self._end_threads()
        loop = self._loop
        if loop is None:
            return

        async def cancel_all() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CANCEL_WAIT_SECONDS)

        if self._thread is not None and self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(CANCEL_WAIT_SECONDS + 1)
            except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError) as exc:
                log.warning("async handlers did not unwind at the stop", extra={"error": repr(exc)})
        loop.call_soon_threadsafe(loop.stop)
