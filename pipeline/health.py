"""``/healthz``, ``/readyz`` and ``/metrics`` for every ``pipeline run SERVICE`` process (``PIPELINE_HEALTH_PORT``).

* ``/healthz`` (alive): 200 while every service loop of the process has beaten its heart within the stall
  limit (the watchdog's own rule); 503 with the silent ones otherwise. An orchestrator restarts on it.
* ``/readyz`` (ready): 200 once every loop has joined its group and finished restoring its state (its first
  rebalance is done and no restore is running); 503 while one is still restoring, so a load balancer or a
  rollout waits for it.
* ``/metrics``: Prometheus, from prometheus_client (lag, batches, restores, dead letters, ...).

Served by the standard library's WSGI server in a daemon thread; the metrics app is prometheus_client's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # probes every few seconds: not worth a log line each
        pass


def status(loops: Iterable[Any], stall_limit_s: float,
           now: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(health, readiness) of the loops, each ``{"ok": bool, "services": {name: detail}}`` (pure; tests use it)."""
    now = time.monotonic() if now is None else now
    alive: dict[str, Any] = {}
    ready: dict[str, Any] = {}
    for loop in loops:
        silent = now - loop.heart.last
        alive[loop.name] = {"ok": not stall_limit_s or silent <= stall_limit_s, "silent_s": round(silent, 3)}
        ready[loop.name] = {"ok": bool(getattr(loop, "ready", False)),
                            "partitions": len(getattr(loop, "assignment", []) or [])}
    return ({"ok": all(v["ok"] for v in alive.values()), "services": alive},
            {"ok": all(v["ok"] for v in ready.values()), "services": ready})


def wsgi_app(loops: list[Any], stall_limit_s: float) -> Callable[..., Any]:
    metrics_app = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            served: Iterable[bytes] = metrics_app(environ, start_response)
            return served
        if path not in ("/healthz", "/readyz"):
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "not found: try /healthz, /readyz or /metrics"}']
        alive, ready = status(loops, stall_limit_s)
        body = alive if path == "/healthz" else ready
        start_response("200 OK" if body["ok"] else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return app


def serve(port: int, loops: list[Any], stall_limit_s: float, host: str = "0.0.0.0") -> _Server:
    """Start the health server in a daemon thread; returns it (``shutdown()`` stops it)."""
    server = make_server(host, port, wsgi_app(loops, stall_limit_s), server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
