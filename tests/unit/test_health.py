"""The health server's answers (pure status, and the WSGI app over fake loops)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from wsgiref.util import setup_testing_defaults

from pipeline.health import status, wsgi_app


def loop(name: str, silent: float, ready: bool) -> SimpleNamespace:
    return SimpleNamespace(name=name, heart=SimpleNamespace(last=time.monotonic() - silent), ready=ready,
                           assignment=[1, 2])


def call(app, path: str) -> tuple[str, dict]:
    environ: dict = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    seen: dict = {}
    body = b"".join(app(environ, lambda status, headers: seen.setdefault("status", status)))
    return seen["status"], (json.loads(body) if path != "/metrics" else {"text": body.decode()})


def test_alive_while_every_loop_beats_and_ready_once_every_loop_restored() -> None:
    alive, ready = status([loop("matcher", 1, True), loop("run-owner", 40, False)], stall_limit_s=30)
    assert not alive["ok"] and alive["services"]["matcher"]["ok"] and not alive["services"]["run-owner"]["ok"]
    assert not ready["ok"] and ready["services"]["matcher"] == {"ok": True, "partitions": 2}


def test_the_app_answers_200_or_503_and_serves_metrics() -> None:
    loops = [loop("canceller", 0.1, False)]
    app = wsgi_app(loops, 30)
    assert call(app, "/healthz")[0].startswith("200")
    assert call(app, "/readyz")[0].startswith("503")
    loops[0].ready = True
    assert call(app, "/readyz")[0].startswith("200")
    import pipeline.kafka.metrics  # noqa: F401  (registers the services' metrics)

    assert "pipeline_gate_timeouts_total" in call(app, "/metrics")[1]["text"]
    assert call(app, "/nope")[0].startswith("404")


def test_dev_children_do_not_inherit_the_parents_health_or_metrics_port(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A child binding the parent's port would fail at start and be restarted for ever (found by bench/steps.py)."""
    from pipeline.config import Settings
    from pipeline.supervise import Child

    monkeypatch.setenv("PIPELINE_HEALTH_PORT", "9400")
    monkeypatch.setenv("PIPELINE_METRICS_PORT", "9401")
    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="t.")
    worker = Child(settings, "worker", "app:client")
    assert "PIPELINE_HEALTH_PORT" not in worker.env and "PIPELINE_METRICS_PORT" not in worker.env
    assert worker.env["PIPELINE_BOOTSTRAP_SERVERS"] == "127.0.0.1:1" and worker.env["PIPELINE_TOPIC_PREFIX"] == "t."
    assert worker.argv[-4:] == ["run", "worker", "--app", "app:client"]
    assert Child(settings, "canceller", None).argv[-2:] == ["run", "canceller"]
