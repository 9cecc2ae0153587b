"""The pytest plugin's container broker, as a user's suite gets it: no PIPELINE_TEST_BOOTSTRAP, no Java on PATH,
a Docker-compatible engine (podman's API service here) and the Kafka image of `make images`. The suite below is
the seed scenario on the SDK's test Stack, run by its own pytest process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .engine import KAFKA_IMAGE, ROOT

pytestmark = pytest.mark.timeout(1200)  # the first run on a fresh machine builds the images (~2 min)

USER_SUITE = '''
import shutil

import docker

from examples.newsletter import app
from pipeline.testing.stack import Stack


def test_cleanup_runs_after_cancel(kafka_bootstrap):
    assert shutil.which("java") is None  # the broker is not the embedded one
    client = docker.from_env()
    try:  # ... it is the container, of the image asked for
        assert client.containers.list(filters={"ancestor": "%(image)s"})
    finally:
        client.close()
    with Stack(app, kafka_bootstrap) as stack:
        stack.send("contacts/import.requested", {"importId": "abc"})
        run = stack.wait_run(lambda r: r["status"] == "Sleeping")
        stack.send("contacts/import.cancelled", {"importId": "abc"})
        (cancelled,) = stack.wait_system_event("inngest/function.cancelled")
        assert cancelled["data"]["run_id"] == run["run_id"]
        cleanup = stack.wait_run(lambda r: r["function_id"] == "newsletter-app-cleanup-cancelled-import"
                                 and r["status"] == "Completed")
    assert cleanup["output"] == '"Import was cancelled: abc"'
'''


@pytest.mark.parametrize("network", ["host", "bridge"])
def test_a_user_suite_gets_kafka_from_a_container(images: str, docker_host: str, tmp_path: Path,
                                                  network: str) -> None:
    (tmp_path / "test_user.py").write_text(USER_SUITE % {"image": KAFKA_IMAGE})
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIPELINE_", "PYTEST_", "JAVA_HOME")) and k != "PYTHONPATH"}
    env.update({
        "PATH": str(Path(sys.executable).parent),  # the venv's tools only: no java
        "PYTHONPATH": str(ROOT),  # examples.newsletter
        "DOCKER_HOST": docker_host,
        "TESTCONTAINERS_RYUK_DISABLED": "true",  # its reaper image cannot be pulled without a registry
        "PIPELINE_TEST_KAFKA_IMAGE": KAFKA_IMAGE,
        "PIPELINE_TEST_CONTAINER_NETWORK": network,
    })
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
