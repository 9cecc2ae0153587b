"""Apps served with the official Inngest SDKs, against a real broker: a Stack of services with no ``--app``
functions, this runtime's HTTP API on a free port (``/fn/register``, ``/e/{key}``), and the app in a child
process (Node with ``tsx`` for inngest-js, uvicorn for inngest-py) pointed at that API as its Inngest server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.api.server import start_in_thread, stop
from pipeline.apps.sync import sync_app
from pipeline.sdk.app import Registry
from pipeline.testing.stack import Stack

NODE_DIR = Path(__file__).resolve().parent / "node"  # inngest 3.x
NODE4_DIR = Path(__file__).resolve().parent / "node4"  # inngest 4.x
PY_APP_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_node(node_dir: Path = NODE_DIR) -> None:
    """Skip (with the reason) when the Node toolchain `make test` installs is missing."""
    if shutil.which("node") is None or not (node_dir / "node_modules" / ".bin" / "tsx").exists():
        pytest.skip(f"Node and {node_dir.name}/node_modules (npm ci, done by `make test`) are needed")


class App:
    """An app served over HTTP in a child process; its output is kept in a file for the test to read."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/api/inngest"
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not start: {self.output()}") from None
                time.sleep(0.1)

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._out.close()


def app_env(api_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env.update({"INNGEST_DEV": "1", "INNGEST_BASE_URL": f"http://127.0.0.1:{api_port}", **extra})
    return env


@contextmanager
def node_app(api_port: int, which: str, tmp: Path, node_dir: Path = NODE_DIR, **env: str) -> Iterator[App]:
    """``tsx serve.ts which`` in ``node_dir`` (the inngest 3.x or 4.x package)."""
    need_node(node_dir)
    port = free_port()
    app = App([str(node_dir / "node_modules" / ".bin" / "tsx"), "serve.ts", which], node_dir,
              app_env(api_port, PORT=str(port), **env), port, tmp / f"{node_dir.name}-{which}.log")
    try:
        yield app
    finally:
        app.stop()


@contextmanager
def python_app(api_port: int, module: str, tmp: Path, port: int | None = None, **env: str) -> Iterator[App]:
    """``uvicorn module:api`` (on ``port``, e.g. the one an app had before it was stopped)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "uvicorn", f"{module}:api", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]
    app = App(argv, PY_APP_DIR, app_env(api_port, **env), port, tmp / f"py-{module}.log")
    try:
        yield app
    finally:
        app.stop()


class HttpStack:
    """The services (a :class:`Stack` without ``--app`` functions) and the HTTP API the apps talk to."""

    def __init__(self, bootstrap: str, apps: list[Any] | None = None, **settings: Any) -> None:
        self.stack = Stack(apps or [], bootstrap, **settings)
        self.api_port = 0
        self._server: Any = None

    def __enter__(self) -> HttpStack:
        self.stack.__enter__()
        self.api_port = free_port()
        self._server = start_in_thread(self.stack.settings, "127.0.0.1", self.api_port, registry=Registry([]))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            stop(*self._server)
        self.stack.__exit__(*exc)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def sync(self, app: App, functions: set[str]) -> Any:
        """Sync the app and wait until every service of the stack serves ``functions``."""
        result = sync_app(app.url, signed=bool(self.stack.settings.signing_key))
        assert result.ok and "error" not in result.body, (result.status, result.body, app.output())
        self.wait_served(functions, f"after the answer {result.body}")
        return result.body

    def registries(self) -> list[Registry]:
        out = []
        for name, loop in self.stack.loops.items():
            if name == "canceller":
                continue
            holder = loop if name == "worker" else loop.processor
            out.append(holder.registry)
        return out

    def wait_served(self, functions: set[str], context: str = "", timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(functions <= set(r.by_id) for r in self.registries()):
            assert time.monotonic() < deadline, f"{functions} not served by every service {context}"
            time.sleep(0.05)

    def wait_until(self, predicate: Any, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def send(self, *events: dict[str, Any], headers: dict[str, str] | None = None) -> list[str]:
        """Send events through the API (``POST /e/{key}``), as an SDK does; returns their ids."""
        body = list(events) if len(events) > 1 else events[0]
        response = httpx.post(f"{self.api}/e/test-key", json=body, headers=headers or {}, timeout=30)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == 200
        ids: list[str] = answer["ids"]
        return ids
