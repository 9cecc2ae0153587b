"""docker-compose.yml as a user runs it (podman-compose here, `docker compose` on Docker), with the app mounted as
docs/deploy.md shows: the stack plays the seed scenario end to end, and a service container SIGKILLed
mid-scenario is restarted by its policy without losing a run, an event or a cancellation."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.broker._util import free_ports
from pipeline.serde import EVENT, Serde
from pipeline.serde.models import event_record_to_dict
from pipeline.testing.helpers import until as _poll
from pipeline.testing.stack import TopicWatcher

from .engine import ROOT, STREAM_SERVICES, ComposeStack

pytestmark = pytest.mark.timeout(1200)  # the first run on a fresh machine builds the images (~2 min)
CANCELLED = "inngest/function.cancelled"
AUTH = {"Authorization": "Bearer dev-signing-key"}


class Stack:
    """The running compose stack, driven over its HTTP API; system events read from its broker."""

    def __init__(self, compose: ComposeStack) -> None:
        self.compose = compose
        serde = Serde()
        self.system_events = TopicWatcher(compose.bootstrap, "system-events",
                                          lambda v: event_record_to_dict(serde.decode_as(EVENT, v or b"")))

    def send(self, name: str, data: dict[str, Any]) -> str:
        sent = httpx.post(f"{self.compose.api}/e/dev-event-key", json={"name": name, "data": data}, timeout=10)
        assert sent.status_code == 200, sent.text
        (event_id,) = sent.json()["ids"]
        return str(event_id)

    def run_of(self, event_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            runs = httpx.get(f"{self.compose.api}/v1/events/{event_id}/runs", headers=AUTH, timeout=10).json()
            return next((r for r in runs.get("data") or [] if r["status"] == status), None)
        return until(find, timeout, f"a {status} run of event {event_id}")

    def run(self, run_id: str) -> dict[str, Any]:
        got = httpx.get(f"{self.compose.api}/v1/runs/{run_id}", headers=AUTH, timeout=10)
        assert got.status_code == 200, got.text
        return dict(got.json()["data"])

    def cancelled(self, run_id: str) -> list[dict[str, Any]]:
        with self.system_events._cond:
            return [e for e in self.system_events.records if e["name"] == CANCELLED and e["id"] == run_id]


#: The user's app mounted into the containers, as docs/deploy.md shows: the example app's folder under another
#: package name, so the services import the mounted copy, not the one built into the image.
APP_OVERRIDE = """
x-app: &app
  volumes: ["{examples}:/app/mounted_app:ro"]
services: {{matcher: *app, run-owner: *app, worker: *app}}
"""


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll every 0.3 s, counting HTTP errors (a container still starting) as not yet."""
    return _poll(check, timeout, what, every=0.3, ignore=(httpx.HTTPError,))


@pytest.fixture
def stack(engine: str, images: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if engine == "docker" and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                             check=False).returncode != 0:
        pytest.skip("Docker answers but its compose plugin is missing (`docker compose version` failed)")
    names = ("kafka", "controller", "api", "api-health", *STREAM_SERVICES)
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    workdir = tmp_path_factory.mktemp("compose")
    override = workdir / "docker-compose.app.yml"
    override.write_text(APP_OVERRIDE.format(examples=ROOT / "examples"))
    compose = ComposeStack(engine, f"pipeline-test-{os.getpid()}", ports, workdir, [override])
    compose.env["PIPELINE_APP"] = "mounted_app.newsletter:app"
    started = time.monotonic()
    compose.up()
    try:
        compose.wait_ready(300)  # a loaded 2-core CI machine took 43-52 s; 180 s once ran out
        print(f"\n{images}; compose stack ready {time.monotonic() - started:.0f} s after `up`")
        stack = Stack(compose)
        yield stack
        stack.system_events.close()
    finally:
        save_logs(compose, compose.workdir)
        compose.down()


def save_logs(compose: ComposeStack, into: Path) -> None:
    """Each container's log next to the test's tmp files, for a failure's post-mortem."""
    for service in ("kafka", "topics", *STREAM_SERVICES, "api"):
        (into / f"{service}.log").write_text(compose.logs(service))


def test_compose_stack_plays_the_seed_scenario_and_survives_sigkilled_containers(stack: Stack) -> None:
    """One test, two phases, on one stack: pytest-xdist cannot keep two tests on one worker here (its loadgroup
    mode is a no-op under pytest 9.2), and a second stack would double the test's cost."""
    seed_scenario(stack)
    sigkilled_containers_lose_nothing(stack)


def seed_scenario(stack: Stack) -> None:
    """The seed scenario over HTTP: the run sleeps, the cancel event cancels it, function.cancelled, cleanup."""
    import_id = str(uuid.uuid4())
    trigger = stack.send("contacts/import.requested", {"importId": import_id})
    run = stack.run_of(trigger, "Sleeping")  # between batches (NEWSLETTER_BATCH_PAUSE_S, 30 s)
    assert run["function_id"] == "newsletter-app-import-all-contacts"
    stack.send("contacts/import.cancelled", {"importId": import_id})
    (cancelled,) = until(lambda: stack.cancelled(run["run_id"]), 60, "inngest/function.cancelled")
    assert cancelled["data"]["function_id"] == "newsletter-app-import-all-contacts"
    assert cancelled["data"]["run_id"] == run["run_id"]
    assert cancelled["data"]["event"]["id"] == trigger
    assert cancelled["data"]["event"]["data"] == {"importId": import_id}
    until(lambda: stack.run(run["run_id"])["status"] == "Cancelled", 30, "the run to be Cancelled")
    until(lambda: f"Import was cancelled: {import_id}" in stack.compose.logs("worker"), 60,
          "the cleanup function's log line in the worker container")


def sigkilled_containers_lose_nothing(stack: Stack) -> None:
    """SIGKILLed run-owner and canceller containers come back by their restart policy; every run, including one
    triggered while they were down, is cancelled exactly once and cleaned up."""
    compose = stack.compose
    imports = [str(uuid.uuid4()) for _ in range(3)]
    triggers = [stack.send("contacts/import.requested", {"importId": i}) for i in imports]
    runs = [stack.run_of(t, "Sleeping") for t in triggers]
    victims = ("run-owner", "canceller")
    before = {s: compose.restarts(s) for s in victims}
    for service in victims:
        compose.sigkill(service)
    # sent while the run owner is dead or restarting: its run must start all the same
    late = str(uuid.uuid4())
    imports.append(late)
    runs.append(stack.run_of(stack.send("contacts/import.requested", {"importId": late}), "Sleeping", timeout=120))
    until(lambda: all(compose.restarts(s) > before[s] for s in victims), 60, "the restart policy to restart them")
    until(lambda: all(compose.ready(s) for s in victims), 120, "the restarted services to be ready")
    for import_id in imports:
        stack.send("contacts/import.cancelled", {"importId": import_id})
    for run in runs:
        until(lambda run=run: stack.cancelled(run["run_id"]), 90, f"function.cancelled for {run['run_id']}")
    for import_id in imports:
        until(lambda i=import_id: f"Import was cancelled: {i}" in compose.logs("worker"), 60,
              f"the cleanup of {import_id}")
    for run in runs:
        assert stack.run(run["run_id"])["status"] == "Cancelled"
    time.sleep(3)  # a duplicate would come from a replayed batch: give it time to show
    assert all(len(stack.cancelled(run["run_id"])) == 1 for run in runs), "function.cancelled sent twice"
    assert {s: compose.inspect(s, "{{.State.Status}}") for s in victims} == dict.fromkeys(victims, "running")
