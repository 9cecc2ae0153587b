"""Where a worker's handlers run: a thread pool for sync handlers and one event loop for async ones.

Kept apart from the worker's Kafka loop so that the loop only decides *what* runs and records outcomes, while
this decides *where*: one event loop for the worker's life (async clients that user code creates keep
working across invocations) and a bounded pool of threads, both made at first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("pipeline.worker")

CANCEL_WAIT_SECONDS = 2.0  # at the stop, for async handlers cancelled after the drain wait to unwind


class HandlerRuntime:
    """Runs handler calls side by side: ``run_sync`` on the pool, ``run_async`` on the event loop."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run_sync(self, fn: Callable[..., None], *args: Any) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="handler")
        self._pool.submit(fn, *args)

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
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
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
