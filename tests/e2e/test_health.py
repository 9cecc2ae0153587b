"""Every ``pipeline run SERVICE`` serves /healthz, /readyz and /metrics on PIPELINE_HEALTH_PORT, and /readyz
flips to 200 only after the service has joined its group and restored its state (real broker, processes)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from pipeline.testing.stack import Stack

from .apps import app
from .procs import service_process

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("service", ["matcher", "executor", "canceller", "worker"])
def test_readyz_flips_after_restore(kafka_bootstrap: str, service: str) -> None:
    with Stack(app, kafka_bootstrap, services=()) as stack:
        if service == "executor":  # some state to restore first
            for i in range(50):
                stack.send("test/wild.a", id=f"h{i}")
        port = free_port()
        proc = service_process(stack, service, f"health-{service}", PIPELINE_HEALTH_PORT=str(port))
        seen: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while not seen or seen[-1] != 200:
                assert time.monotonic() < deadline, f"{service} never became ready: {seen[-5:]}"
                assert proc.poll() is None, f"{service} exited with {proc.returncode}"
                try:
                    seen.append(httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code)
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.05)
            if service != "worker":  # a worker has no state to restore: it may be ready at its first answer
                assert 503 in seen, seen  # it said "not ready" before its group and restore were done
            alive = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert alive.status_code == 200 and service in alive.json()["services"]
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
            assert ready["services"][service]["ok"]
            assert "pipeline_" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        finally:
            proc.terminate()
            assert proc.wait(40) == 0  # SIGTERM: a clean stop
