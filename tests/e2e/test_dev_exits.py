"""Every way `pipeline dev` ends leaves none of its processes behind: an app that does not load (one error line,
no child started), a child killed (the worker is started again; any other ends dev), SIGTERM twice, SIGINT, and
even a SIGKILL of dev itself. Processes are found through /proc by an environment marker each session sets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.testing.helpers import free_port, unique_name, until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")]
ROOT = Path(__file__).resolve().parents[2]
MARK = "PIPELINE_TEST_DEV_SESSION"
SERVICES = ("matcher", "run-owner", "canceller", "worker")


def _session_processes(session: str) -> dict[int, tuple[int, list[str]]]:
    """Live processes (not zombies) whose environment carries this session's marker: pid -> (ppid, argv)."""
    needle = f"{MARK}={session}".encode()
    found: dict[int, tuple[int, list[str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = [a.decode() for a in fh.read().split(b"\0") if a]
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), argv)
    return found


class Dev:
    """One `pipeline dev` session, its output in a file."""

    def __init__(self, kafka_bootstrap: str, tmp_path: Path, app: str = "examples.newsletter:app") -> None:
        self.session = uuid.uuid4().hex
        self.log_path = tmp_path / f"dev-{self.session[:8]}.log"
        env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
               "PIPELINE_BOOTSTRAP_SERVERS": kafka_bootstrap, "PIPELINE_TOPIC_PREFIX": unique_name("devx") + ".",
               "PIPELINE_INSTANCE_ID": f"devx-{self.session[:8]}", MARK: self.session}
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "dev", "--app", app,
                                          "--port", str(free_port())], cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def children(self) -> dict[str, int]:
        """The service of each running child of dev: name -> pid."""
        out = {}
        for pid, (ppid, argv) in _session_processes(self.session).items():
            if ppid == self.proc.pid and "run" in argv:
                out[argv[argv.index("run") + 1]] = pid
        return out

    def wait_ready(self, timeout: float = 60) -> dict[str, int]:
        """Every child running with its signal handlers installed (it logged that it started)."""
        def ready() -> dict[str, int] | None:
            text = self.output
            kids = self.children()
            if (set(kids) == set(SERVICES) and text.count('"msg": "service started"') >= 3
                    and '"msg": "worker started"' in text):
                return kids
            assert self.proc.poll() is None, f"dev exited with {self.proc.returncode}:\n{text[-3000:]}"
            return None

        return until(ready, timeout, "dev's children to start")

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"dev did not exit within {timeout}s:\n{self.output[-3000:]}")

    def assert_nothing_left(self, timeout: float = 10) -> None:
        until(lambda: not _session_processes(self.session), timeout,
               f"every process of the dev session to end (left: {_session_processes(self.session)})")

    def cleanup(self) -> None:
        """Whatever the test found, leave no process behind (the old code's orphans included)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in _session_processes(self.session):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def dev(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Dev]]:
    sessions: list[Dev] = []

    def start(app: str = "examples.newsletter:app") -> Dev:
        session = Dev(kafka_bootstrap, tmp_path, app)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.cleanup()


def test_an_app_that_fails_to_import_is_one_error_line_and_no_process_left(
        dev: Callable[..., Dev], tmp_path: Path) -> None:
    module = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text('raise RuntimeError("boom at import: it\'s \\"broken\\"")\n')
    session = dev(f"{module}:app")
    code = session.wait_exit(30)
    out = session.output
    assert code != 0
    session.assert_nothing_left(3)
    assert out.count("boom at import") == 1, out
    assert "Traceback" not in out, out
    (line,) = [x for x in out.splitlines() if "boom at import" in x]
    assert f"{module}:app" in line and "RuntimeError" in line
    assert "HTTP API" not in out, "nothing starts for an app that does not load"


@pytest.mark.parametrize("service", ["matcher", "run-owner", "canceller"])
def test_a_killed_service_child_ends_dev_and_every_other_child(dev: Callable[..., Dev], service: str) -> None:
    session = dev()
    children = session.wait_ready()
    os.kill(children[service], signal.SIGKILL)
    assert session.wait_exit() == 1
    assert f"{service} stopped unexpectedly" in session.output
    session.assert_nothing_left()


@pytest.mark.parametrize("how", ["SIGTERM twice", "SIGINT"])
def test_a_killed_worker_is_started_again_and_a_stop_signal_ends_everything_cleanly(
        dev: Callable[..., Dev], how: str) -> None:
    session = dev()
    first = session.wait_ready()["worker"]
    if how == "SIGTERM twice":
        os.kill(first, signal.SIGKILL)
        again = until(lambda: session.children().get("worker") not in (None, first), 30, "a new worker")
        until(lambda: session.output.count('"msg": "worker started"') >= 2, 60, "the new worker to start")
        assert set(session.children()) == set(SERVICES) and session.proc.poll() is None
        assert again != first
        session.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        session.proc.send_signal(signal.SIGTERM)
    else:
        session.proc.send_signal(signal.SIGINT)
    assert session.wait_exit() == 0, session.output[-3000:]
    session.assert_nothing_left()


def test_a_sigkilled_dev_leaves_no_child(dev: Callable[..., Dev]) -> None:
    session = dev()
    session.wait_ready()
    session.proc.kill()
    session.proc.wait()
    session.assert_nothing_left()
