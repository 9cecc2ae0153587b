"""The worker's handler runtime: sync calls run side by side on a bounded pool of threads started as needed,
and a shutdown drops the calls not started while the running ones finish."""

from __future__ import annotations

import threading
import time

from pipeline.workers.runtime import HandlerRuntime


def _handler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("handler_")]


def test_sync_calls_run_side_by_side_up_to_the_limit_and_threads_are_started_only_when_all_are_busy() -> None:
    runtime = HandlerRuntime(3)
    before = len(_handler_threads())
    done: list[int] = []
    for i in range(20):  # one at a time: one thread serves them all
        finished = threading.Event()
        runtime.run_sync(lambda i=i, finished=finished: (done.append(i), finished.set()))
        assert finished.wait(5)
    assert done == list(range(20)) and len(_handler_threads()) - before == 1

    gate = threading.Event()
    running: list[int] = []
    lock = threading.Lock()

    def blocked(i: int) -> None:
        with lock:
            running.append(i)
        gate.wait(5)

    for i in range(5):
        runtime.run_sync(blocked, i)
    deadline = time.monotonic() + 5
    while len(running) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(running) == 3 and len(_handler_threads()) - before == 3  # the limit: two calls wait for a thread
    gate.set()
    deadline = time.monotonic() + 5
    while len(running) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(running) == [0, 1, 2, 3, 4]
    runtime.shutdown()
    deadline = time.monotonic() + 5
    while len(_handler_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_handler_threads()) == before  # every pool thread ended at the shutdown


def test_shutdown_drops_calls_not_started_and_lets_the_running_ones_finish() -> None:
    runtime = HandlerRuntime(1)
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        started.set()
        release.wait(5)
        ran.append("first")

    runtime.run_sync(first)
    runtime.run_sync(lambda: ran.append("second"))  # waits for the one thread
    assert started.wait(5)
    runtime.shutdown()
    release.set()
    deadline = time.monotonic() + 5
    while "first" not in ran and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert ran == ["first"]


def test_a_call_that_raises_is_logged_and_the_thread_goes_on(caplog) -> None:  # type: ignore[no-untyped-def]
    runtime = HandlerRuntime(1)
    ok = threading.Event()

    def boom() -> None:
        raise RuntimeError("escaped")

    runtime.run_sync(boom)
    runtime.run_sync(ok.set)
    assert ok.wait(5)
    assert any("escaped the worker" in r.getMessage() for r in caplog.records)
    runtime.shutdown()


def test_the_process_exits_when_the_runtime_was_never_shut_down() -> None:
    """A worker whose loop ends with an error before :meth:`HandlerRuntime.shutdown` must still exit (to be
    restarted): idle pool threads may not hold the interpreter's exit, as a ThreadPoolExecutor's do not; a call
    running at the exit still finishes."""
    import subprocess
    import sys

    script = (
        "import threading, time\n"
        "from pipeline.workers.runtime import HandlerRuntime\n"
        "rt = HandlerRuntime(2)\n"
        "done = threading.Event()\n"
        "rt.run_sync(done.set)\n"
        "assert done.wait(5)\n"
        "rt.run_sync(lambda: (time.sleep(0.3), print('finished', flush=True)))\n"
        "time.sleep(0.05)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "finished"
