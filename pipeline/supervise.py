"""Running services as a process: which loops, which instance id, who watches them, and how the process ends.

``pipeline run SERVICE`` and ``pipeline dev`` both come here. The rules are crash-only (docs/reliability.md):
every stop that nobody asked for ends the process with a non-zero code, so that a supervisor which restarts
on failure (compose ``restart: on-failure``, systemd ``Restart=on-failure``) always restarts it:

* 0  asked to stop (SIGTERM/SIGINT), after the last batch committed;
* 1  a service failed (its thread died, or a worker could not deliver outcomes);
* 70 the watchdog found a loop making no progress (a Kafka call hung past its deadline).

``pipeline dev`` leaves no child behind, however it ends: it stops every child on each of its exit paths (its
own exceptions included), and each child is killed by the kernel when dev dies, even by SIGKILL
(:func:`die_with_parent`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from rich.console import Console

from .config import Settings
from .instance import resolve_instance
from .kafka.client import bootstrap
from .kafka.watchdog import Watchdog

err = Console(stderr=True)
log = logging.getLogger("pipeline.dev")
EXIT_FAILED = 1
DEV_PARENT_ENV = "PIPELINE_DEV_PARENT"  # on pipeline dev's children: the parent's pid (they die with it)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
CHILD_STOP_SECONDS = 35.0  # a child's clean stop (its worker drains for up to 30 s), then SIGKILL


LOOP_SERVICES = ("matcher", "run-owner", "canceller", "source")


def build_service(name: str, registry: Any, settings: Settings, **owner_options: Any) -> Any:
    """One service, not started: a ServiceLoop for the matcher, run owner ("run-owner") or canceller, or the
    Worker. ``owner_options`` go to the RunOwner (tests shorten its retry backoff)."""
    from .canceller.service import Canceller
    from .kafka.loop import ServiceLoop
    from .matcher.service import Matcher
    from .run_owner.owner import RunOwner
    from .workers.service import Worker

    if name != "canceller" and registry is not None:
        from .apps.store import follow_functions

        follow_functions(registry, settings)  # functions synced from apps over HTTP, then followed
    if name == "worker":
        return Worker(registry, settings)
    if name == "matcher":
        return ServiceLoop(Matcher(registry, settings), settings)
    if name == "run-owner":
        return ServiceLoop(RunOwner(registry, settings, **owner_options), settings)
    if name == "canceller":
        return ServiceLoop(Canceller(settings), settings)
    if name == "source":
        from .sources.service import Sources

        return ServiceLoop(Sources(registry.sources, settings), settings)
    raise ValueError(f"unknown service {name!r}")


def _registry(app_spec: str | None) -> Any:
    from .sdk.app import Registry, load_app

    return Registry([load_app(app_spec)]) if app_spec else Registry([])


def build_loops(settings: Settings, app_spec: str | None, services: tuple[str, ...]) -> list[Any]:
    """The service loops among ``services`` (not started; the worker and the API run apart)."""
    registry = _registry(app_spec)
    return [build_service(name, registry, settings) for name in services if name in LOOP_SERVICES]


def die_with_parent() -> None:
    """In a child of ``pipeline dev`` (``PIPELINE_DEV_PARENT`` set): ask the kernel to SIGKILL this process when
    the parent dies, however it dies (SIGKILL included), and exit at once if it is already gone. Killing is
    safe (crash-only: everything the services write is transactional); a clean stop is the parent's to ask.
    Linux only (``PR_SET_PDEATHSIG``); elsewhere dev's own stop is all there is. The death signal follows the
    parent *thread* that started the child: :meth:`Child.start` runs on dev's main thread."""
    parent = os.environ.get(DEV_PARENT_ENV, "")
    if not parent.isdigit():
        return
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                log.warning("could not die with pipeline dev", extra={"errno": ctypes.get_errno()})
        except (OSError, AttributeError) as exc:
            log.warning("could not die with pipeline dev", extra={"error": repr(exc)})
    if os.getppid() != int(parent):  # dev died before the death signal was set: nobody would stop this one
        os._exit(EXIT_FAILED)


class Child:
    """A ``pipeline run SERVICE`` child process of ``pipeline dev``.

    Services run in their own processes so that each has its own interpreter lock: in one process the
    matcher, the run owner, the canceller and the API's readers took turns on one core while a burst of
    events was ingested (bench/steps.py: cancels during the ingest waited twice as long). The worker is
    also a child so that user code can neither stall the services nor crash them; a worker that dies is
    started again (its unfinished invocations are delivered again), any other child that dies ends dev.
    """

    def __init__(self, settings: Settings, service: str, app_spec: str | None) -> None:
        # The parent's health and metrics ports are not the children's: a second bind would fail at start.
        self.env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_HEALTH_PORT", "PIPELINE_METRICS_PORT")}
        self.env.update(PIPELINE_BOOTSTRAP_SERVERS=bootstrap(settings), PIPELINE_TOPIC_PREFIX=settings.topic_prefix)
        self.env[DEV_PARENT_ENV] = str(os.getpid())
        self.service = service
        self.argv = [sys.executable, "-m", "pipeline.cli", "run", service] + (
            ["--app", app_spec] if app_spec else [] if service == "canceller" else ["--no-app"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._terminated = False

    def start(self) -> None:
        """Start the process (from dev's main thread: see :func:`die_with_parent`)."""
        self.proc = subprocess.Popen(self.argv, env=self.env)
        self._terminated = False

    def exited(self) -> int | None:
        """The child's exit code if it has stopped, else None."""
        return None if self.proc is None else self.proc.poll()

    def check(self) -> None:
        """Restart the child if it died (for the worker: its unfinished invocations are delivered again)."""
        code = self.exited()
        if code is not None:
            err.print(f"[yellow]{self.service} exited with {code}; starting it again[/yellow]")
            self.restarts += 1
            self.start()

    def terminate(self) -> None:
        """SIGTERM, once: a second one could land while the child's interpreter is finalizing, after its
        handler is gone, and kill it (exit -15) in the middle of a clean stop."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.terminate()

    def stop(self, timeout: float = CHILD_STOP_SECONDS) -> int | None:
        """SIGTERM (the child commits its last batch and leaves its group), then wait; SIGKILL if it has not
        stopped within ``timeout``; its exit code."""
        self.terminate()
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL, if it is still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


def run_dev(settings: Settings, app_spec: str | None, *, host: str, port: int, registry: Any = None,
            sync_urls: list[str] | None = None) -> int:
    """``pipeline dev``: each service in a child process, the HTTP API and dev UI in this one; returns the exit
    code (0 when asked to stop and every child stopped cleanly). ``registry``: the app, already loaded by the
    caller (else loaded here). No child outlives this call, whichever way it ends (an exception included)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # again while stopping: the stop under way goes on
    if settings.health_port:
        err.print("[yellow]PIPELINE_HEALTH_PORT: pipeline dev serves no health endpoints; "
                  "`pipeline run SERVICE` does, one port per process[/yellow]")
    from .api.server import start_in_thread

    if registry is None:
        registry = _registry(app_spec)
    try:  # before any child, so that an API that cannot start leaves nothing to stop
        server, api_thread = start_in_thread(settings, host, port, registry=registry)
    except (RuntimeError, TimeoutError, OSError) as exc:
        err.print(f"[red]the HTTP API did not start on {host}:{port}: {exc}[/red]")
        return EXIT_FAILED
    err.print(f"[green]HTTP API and dev UI on http://{host}:{port}/[/green]")
    if sync_urls:
        from .apps.sync import sync_in_background

        sync_in_background(sync_urls, f"http://{host}:{port}", stop, signed=bool(settings.signing_key))
    services = [Child(settings, name, None if name == "canceller" else app_spec) for name in LOOP_SERVICES
                if name != "source" or registry.sources]  # the source service runs when the app has sources
    worker = Child(settings, "worker", app_spec)
    started: list[Child] = []
    code = EXIT_FAILED  # until the supervision loop ends normally: an exception ends dev (and its children) too
    try:
        for child in (*services, worker):
            if stop.is_set():
                break
            started.append(child)
            child.start()
        code = _supervise(stop, services, worker, api_thread)
    finally:
        stopped = _stop_children(started)
        server.should_exit = True
        api_thread.join(timeout=30)
    return code or stopped


def _supervise(stop: threading.Event, services: list[Child], worker: Child, api_thread: threading.Thread) -> int:
    """Watch the children until dev is asked to stop (0) or something stops that should not (1). The worker is
    started again when it dies; any other child that stops, or the API, ends dev."""
    while not stop.is_set():
        ended = [(c.service, c.exited()) for c in services if c.exited() is not None]
        if ended:
            name, exit_code = ended[0]
            if exit_code == 0 and stop.wait(0.2):
                return 0  # a Ctrl-C in the terminal reaches the whole process group: the child stopped for it
            err.print(f"[red]{name} stopped unexpectedly (exit {exit_code}); shutting down[/red]")
            return EXIT_FAILED
        if not api_thread.is_alive():
            err.print("[red]the API stopped unexpectedly; shutting down[/red]")
            return EXIT_FAILED
        worker.check()
        stop.wait(0.5)
    return 0


def _stop_children(children: list[Child]) -> int:
    """Stop every child: SIGTERM to all at once, then wait for each (SIGKILL past its time); whatever happens
    meanwhile (an exception, a KeyboardInterrupt), none is left running. 0, or 1 if one stopped badly."""
    code = 0
    try:
        for child in children:
            child.terminate()
        deadline = time.monotonic() + CHILD_STOP_SECONDS
        for child in children:
            stopped = child.stop(max(0.0, deadline - time.monotonic()))
            if stopped not in (0, None):
                err.print(f"[red]{child.service} exited with {stopped} while stopping[/red]")
                code = EXIT_FAILED
    finally:
        for child in children:
            child.kill()
    return code


def _watchdog(settings: Settings, hearts: list[Any]) -> Watchdog | None:
    """Watch the loops' hearts when the stall limit is on (``PIPELINE_STALL_TIMEOUT_MS``)."""
    if not settings.stall_timeout_ms:
        return None
    dog = Watchdog(settings.stall_timeout_ms / 1000)
    for heart in hearts:
        dog.watch(heart)
    dog.start()
    return dog


def _health(settings: Settings, loops: list[Any]) -> None:
    """Serve /healthz, /readyz and /metrics for these loops when ``PIPELINE_HEALTH_PORT`` is set."""
    if settings.health_port and loops:
        from .health import serve

        serve(settings.health_port, loops, settings.stall_timeout_ms / 1000)
        err.print(f"[green]health on http://0.0.0.0:{settings.health_port}/healthz, /readyz, /metrics[/green]")


def _stop_on_signals() -> threading.Event:
    """An event SIGTERM/SIGINT set from now on. ``pipeline dev`` stops its children with SIGTERM, possibly while
    one is still starting (connecting, reading the functions topic): without a handler yet, that child died by
    the signal (-15) and dev reported a failed stop."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_services(settings: Settings, app_spec: str | None, services: tuple[str, ...], *, host: str,
                 port: int) -> int:
    """Run ``services`` in this process until SIGTERM/SIGINT or a failure; returns the exit code."""
    from .kafka.loop import run_in_thread

    die_with_parent()
    stop = _stop_on_signals()  # before building: a SIGTERM while starting up is a stop, not a death by signal
    settings = resolve_instance(settings, services)
    loops = build_loops(settings, app_spec, services)
    if stop.is_set():
        return 0
    _watchdog(settings, [loop.heart for loop in loops])
    _health(settings, loops)
    threads = [run_in_thread(loop) for loop in loops]
    server = None
    if "api" in services:
        from .api.server import start_in_thread

        registry = _registry(app_spec)  # the UI's function page, run replays and synced apps
        server, api_thread = start_in_thread(settings, host, port, registry=registry)
        threads.append(api_thread)
        err.print(f"[green]HTTP API and dev UI on http://{host}:{port}/[/green]")
    code = 0
    while not stop.is_set():
        if any(not th.is_alive() for th in threads):
            err.print("[red]a service stopped unexpectedly; shutting down[/red]")
            code = EXIT_FAILED  # supervisors restart on non-zero
            break
        stop.wait(0.5)
    for loop in loops:
        loop.stop()
    if server is not None:
        server.should_exit = True
    for thread in threads:
        thread.join(timeout=30)
    return code


def run_worker(settings: Settings, app_spec: str) -> int:
    """A worker process: runs handlers until SIGTERM; 1 if its outcomes cannot be delivered."""
    from .workers.service import WorkerFailed

    die_with_parent()
    early = _stop_on_signals()
    settings = resolve_instance(settings, ["worker"])
    worker = build_service("worker", _registry(app_spec), settings)
    worker.install_signal_handlers()
    if early.is_set():
        return 0
    _watchdog(settings, [worker.heart])
    _health(settings, [worker])
    try:
        worker.run()
    except WorkerFailed as exc:
        err.print(f"[red]worker failed: {exc}[/red]")
        return EXIT_FAILED
    return 0
