"""The container engine the `containers` tests drive, as a user would: podman (its Docker-compatible API served by
``podman system service``) or Docker, the images of ``make images`` and the compose stack on the host's network.

podman runs with the repo's deploy/containers.conf (runc, no default ulimits: what this CI host needs) unless
CONTAINERS_CONF says otherwise.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pipeline.broker._fetch import pipeline_home

ROOT = Path(__file__).resolve().parents[2]
SERVICE_IMAGE = os.environ.get("PIPELINE_IMAGE", "localhost/pipeline:latest")
KAFKA_IMAGE = os.environ.get("PIPELINE_KAFKA_IMAGE", "localhost/pipeline-kafka:4.3.1")
#: Services whose /readyz says they joined their group and restored their state.
STREAM_SERVICES = ("matcher", "run-owner", "canceller", "worker")


def find_engine() -> tuple[str | None, str]:
    """("podman" | "docker", "") or (None, why not)."""
    if shutil.which("podman"):
        return "podman", ""
    if shutil.which("docker"):
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
        if info.returncode == 0:
            return "docker", ""
        return None, "no podman, and the docker CLI finds no engine (`docker info` failed)"
    return None, ("no container engine: `make test` installs podman when it runs as root with apt-get; "
                  "otherwise install podman (or Docker) to run these tests")


def engine_env(engine: str) -> dict[str, str]:
    """The environment for engine commands: podman gets the repo's containers.conf (runc) unless one is set or
    runc is missing (a host whose podman runs crun fine)."""
    env = dict(os.environ)
    if engine == "podman" and shutil.which("runc"):
        env.setdefault("CONTAINERS_CONF", str(ROOT / "deploy" / "containers.conf"))
    return env


@contextmanager
def docker_api(engine: str, workdir: Path) -> Iterator[str]:
    """A DOCKER_HOST for Testcontainers: podman's API service on a socket of our own, or Docker's own."""
    if engine == "docker":
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    sock = workdir / "podman.sock"
    log = (workdir / "podman-service.log").open("wb")
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=engine_env(engine),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("http://d/_ping").text == "OK" and client.get("http://d/version").is_success:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, f"podman system service exited: {(workdir / 'podman-service.log').read_text()}"
            assert time.monotonic() < deadline, "podman system service did not answer _ping within 30 s"
            time.sleep(0.2)
        client.close()
        yield f"unix://{sock}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def build_images(engine: str, log_path: Path) -> str:
    """`make images` (deploy/images.sh): cached after the first build, one build at a time on this host."""
    lock_path = pipeline_home() / "images" / ".build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock, log_path.open("w") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        done = subprocess.run([str(ROOT / "deploy" / "images.sh")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env={**engine_env(engine), "ENGINE": engine, "PYTHON": sys.executable}, timeout=1800,
                              check=False)
    text = log_path.read_text()
    if done.returncode == 3:  # no registry, and no way to build the bases from Debian's packages here
        pytest.skip(f"the images cannot be built on this host: {text.strip().splitlines()[-1]}")
    assert done.returncode == 0, f"deploy/images.sh failed (exit {done.returncode}):\n{text[-4000:]}"
    return f"images ready in {time.monotonic() - started:.0f} s"


@dataclass
class ComposeStack:
    """docker-compose.yml + deploy/compose.hostnet.yml under one project name, on ports free on this host."""

    engine: str
    project: str
    ports: dict[str, int]
    workdir: Path
    overrides: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.ports
        self.env = {**engine_env(self.engine), "PIPELINE_IMAGE": SERVICE_IMAGE, "PIPELINE_KAFKA_IMAGE": KAFKA_IMAGE,
                    "PIPELINE_KAFKA_PORT": str(p["kafka"]), "PIPELINE_KAFKA_CONTROLLER_PORT": str(p["controller"]),
                    "PIPELINE_API_PORT": str(p["api"]), "PIPELINE_API_HEALTH_PORT": str(p["api-health"]),
                    **{f"PIPELINE_{s.upper().replace('-', '_')}_HEALTH_PORT": str(p[s]) for s in STREAM_SERVICES}}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def compose(self, *args: str, timeout: float = 300) -> str:
        files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "deploy" / "compose.hostnet.yml")]
        for extra in self.overrides:
            files += ["-f", str(extra)]
        cmd = ([sys.executable, "-m", "podman_compose"] if self.engine == "podman" else ["docker", "compose"])
        done = subprocess.run([*cmd, "-p", self.project, *files, *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"compose {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        return done.stdout

    def up(self) -> None:
        # podman < 4.6 ignores `condition: service_healthy`, and podman 4.3 cannot start a container whose
        # --requires chain is two deep (topics -> kafka): --no-deps starts them all at once and the crash-only
        # services retry (restart: on-failure) until the broker and the topics are there.
        self.compose("up", "-d", *(["--no-deps"] if self.engine == "podman" else []))

    def down(self) -> None:
        self.compose("down", "-t", "10")

    def container(self, service: str) -> str:
        sep = "_" if self.engine == "podman" else "-"
        return f"{self.project}{sep}{service}{sep}1"

    def inspect(self, service: str, template: str) -> str:
        done = subprocess.run([self.engine, "inspect", "-f", template, self.container(service)], env=self.env,
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    def logs(self, service: str) -> str:
        done = subprocess.run([self.engine, "logs", self.container(service)], env=self.env, capture_output=True,
                              text=True, timeout=60, check=False)
        return done.stdout + done.stderr

    def restarts(self, service: str) -> int:
        return int(self.inspect(service, "{{.RestartCount}}"))

    def sigkill(self, service: str) -> int:
        """SIGKILL the service's process from the host, as the OOM killer would: no engine command, so the
        engine sees a crash (exit 137) and its restart policy applies. Returns the killed pid."""
        pid = int(self.inspect(service, "{{.State.Pid}}"))
        assert pid > 0, f"{service} is not running"
        os.kill(pid, signal.SIGKILL)
        return pid

    def ready(self, service: str) -> bool:
        port = self.ports["api"] if service == "api" else self.ports[service]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/{'healthz' if service == 'api' else 'readyz'}",
                             timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.ready(s) for s in (*STREAM_SERVICES, "api")):
            if time.monotonic() > deadline:
                states = {s: self.inspect(s, "{{.State.Status}} restarts={{.RestartCount}}")
                          for s in (*STREAM_SERVICES, "api", "kafka")}
                raise AssertionError(f"the stack is not ready after {timeout} s: {states}\n"
                                     f"matcher log:\n{self.logs('matcher')[-2000:]}")
            time.sleep(0.5)
