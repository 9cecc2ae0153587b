"""Run the API with uvicorn: blocking (``pipeline api``) or in a background thread (``pipeline dev``, tests)."""

from __future__ import annotations

import threading
import time
from typing import Unpack

import uvicorn
from fastapi import FastAPI

from ..config import Settings
from .app import AppOptions, create_app
from .tables import CancellationTable, RunTable


def _config(settings: Settings, host: str, port: int, **app_kwargs: Unpack[AppOptions]) -> uvicorn.Config:
    # log_config=None: keep the process's logging setup (JSON lines) instead of uvicorn's own.
    return uvicorn.Config(create_app(settings, **app_kwargs), host=host, port=port, lifespan="on",
                          log_config=None, log_level=settings.log_level.lower(), access_log=False)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8288) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both: stop accepting, finish requests, run shutdown)."""
    uvicorn.Server(_config(settings, host, port)).run()


def start_in_thread(settings: Settings, host: str = "127.0.0.1", port: int = 8288, *,
                    timeout: float = 30.0, wait_ready: bool = False,
                    **app_kwargs: Unpack[AppOptions]) -> tuple[uvicorn.Server, threading.Thread]:
    """Start the API in a daemon thread and return once it accepts connections.

    ``port=0`` binds a free port; read it back with :func:`bound_port`. With ``wait_ready`` it also
    waits until ``/healthz`` would answer 200 (the tables have caught up with Kafka). Stop it
    with :func:`stop`. uvicorn installs no signal handlers outside the main thread, so the
    caller keeps control of SIGINT/SIGTERM.
    """
    server = uvicorn.Server(_config(settings, host, port, **app_kwargs))
    thread = threading.Thread(target=server.run, name="pipeline-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the API server on {host}:{port} exited during startup (port in use?)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the API server on {host}:{port} did not start within {timeout}s")
        time.sleep(0.02)
    if wait_ready:
        found = _tables(server.config.loaded_app)
        left = max(0.0, deadline - time.monotonic())
        if found is None or not (found[0].wait_ready(left) and found[1].wait_ready(left)):
            stop(server, thread)
            raise TimeoutError("the API tables did not catch up with Kafka in time")
    return server, thread


def _tables(app: object) -> tuple[RunTable, CancellationTable] | None:
    """The API's tables, from the FastAPI app under uvicorn's wrappers (proxy headers, message logger).

    None if there is no such app or its lifespan has not put the tables on its state."""
    seen = 0
    while app is not None and seen < 10:
        if isinstance(app, FastAPI):
            runs = getattr(app.state, "runs", None)
            cancellations = getattr(app.state, "cancellations", None)
            if isinstance(runs, RunTable) and isinstance(cancellations, CancellationTable):
                return runs, cancellations
            return None
        app = getattr(app, "app", None)
        seen += 1
    return None


def bound_port(server: uvicorn.Server) -> int:
    """The port a started server listens on (useful with ``port=0``)."""
    for srv in server.servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server is not listening")


def stop(server: uvicorn.Server, thread: threading.Thread, timeout: float = 15.0) -> None:
    """Ask the server to exit (graceful: in-flight requests finish, lifespan shutdown runs) and join it."""
    server.should_exit = True
    thread.join(timeout)
