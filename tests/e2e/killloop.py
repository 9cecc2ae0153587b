"""The kill loop: every service as several ``pipeline run`` processes, one SIGKILLed every few seconds and
restarted 1-2 s later, while imports start and half of them are cancelled 0-10 s after their request.

It checks what the project promises under faults: every cancel received before its run moved on cancels it,
exactly one ``function.cancelled`` per cancelled run, no duplicate, no lost run. The short version runs in
the default suite (fewer, shorter runs, a kill every ~3 s that takes each kind of service in turn, so every
kind is killed at least once); the long one (``pytest -m chaos``) gives the figures in docs/reliability.md.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from pipeline.testing.stack import Stack

from .apps import app
from .procs import service_process

SERVICES = ("matcher", "run-owner", "canceller", "worker")
CANCELLED = "inngest/function.cancelled"
FINISHED = "inngest/function.finished"


@dataclass
class Report:
    runs: int
    cancels: int
    kills: list[str] = field(default_factory=list)
    lost_runs: list[str] = field(default_factory=list)
    lost_cancels: list[str] = field(default_factory=list)
    wrongly_cancelled: list[str] = field(default_factory=list)
    duplicate_cancelled: list[str] = field(default_factory=list)
    duplicate_finished: list[str] = field(default_factory=list)
    cancel_latency_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds from the start to: warm, sent, ended

    def percentile(self, q: float) -> float:
        values = sorted(self.cancel_latency_ms)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    def summary(self) -> str:
        return (f"{self.runs} runs, {self.cancels} cancels, {len(self.kills)} SIGKILLs in {self.seconds:.0f} s: "
                f"lost cancels {len(self.lost_cancels)}, lost runs {len(self.lost_runs)}, "
                f"duplicate cancelled {len(self.duplicate_cancelled)}, duplicate finished "
                f"{len(self.duplicate_finished)}, wrongly cancelled {len(self.wrongly_cancelled)}; cancel latency "
                f"p50 {self.percentile(0.5):.0f} ms, p99 {self.percentile(0.99):.0f} ms, "
                f"max {self.percentile(1.0):.0f} ms; phases (s) "
                + ", ".join(f"{k} {v:.0f}" for k, v in self.phases.items()))


class Killer:
    """Every ``every`` seconds SIGKILL one process and start it again 1-2 s later, same instance id: a random
    one, or with ``rotate`` one of each kind in turn (matcher, run owner, canceller, worker; random instance)."""

    def __init__(self, stack: Stack, instances: int, every: float, seed: int, rotate: bool = False) -> None:
        self.stack = stack
        self.every = every
        self.rotate = rotate
        self.instances = instances
        self.random = random.Random(seed)
        self.procs: dict[str, subprocess.Popen] = {}
        for name in SERVICES:
            for i in range(instances):
                self.start(f"{name}/{i}")
        self.kills: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)

    def start(self, slot: str) -> None:
        name, i = slot.split("/")
        self.procs[slot] = service_process(self.stack, name, f"{name}-{i}", PIPELINE_STALL_TIMEOUT_MS="20000")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if self.rotate:
                slot = f"{SERVICES[len(self.kills) % len(SERVICES)]}/{self.random.randrange(self.instances)}"
            else:
                slot = self.random.choice(sorted(self.procs))
            self.procs[slot].kill()
            self.procs[slot].wait(10)
            self.kills.append(slot)
            if self._stop.wait(self.random.uniform(1.0, 2.0)):
                self.start(slot)
                return
            self.start(slot)

    def kinds_killed(self) -> set[str]:
        return {slot.split("/")[0] for slot in self.kills}

    def begin(self) -> None:
        self._thread.start()

    def end(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(10)


def run_kill_loop(bootstrap: str, *, runs: int, cancels: int, rate: float, kill_every: float = 4.0,
                  instances: int = 2, sleep_s: int = 15, cancel_within_s: float = 10.0, rotate: bool = False,
                  seed: int = 7) -> Report:
    """Send ``runs`` imports at ``rate`` per second under the killer; cancel ``cancels`` of them 0 to
    ``cancel_within_s`` seconds later. Uncancelled runs sleep ``sleep_s`` seconds. With ``rotate`` the killer
    takes each kind of service in turn and the loop goes on until every kind was killed at least once."""
    rnd = random.Random(seed)
    report = Report(runs, cancels)
    keys = [f"imp-{i}" for i in range(runs)]
    cancelled_keys = set(rnd.sample(keys, cancels))
    started = time.monotonic()
    with Stack(app, bootstrap, services=()) as stack:
        killer = Killer(stack, instances, kill_every, seed, rotate)
        try:
            # the processes joined their groups and restored once a run went through matcher, owner and worker
            stack.send("test/wild.warm-up", {}, id="warm-up")
            stack.wait_run(lambda r: r["event_id"] == "warm-up" and r["status"] == "Completed", timeout=120,
                           what="the warm-up run (the service processes up)")
            report.phases["warm"] = time.monotonic() - started
            killer.begin()
            due: list[tuple[float, str]] = []  # (when, key) of cancels to send
            sent_cancel: dict[str, float] = {}
            t0 = time.monotonic()
            for n, key in enumerate(keys):
                while time.monotonic() < t0 + n / rate:
                    _send_due(stack, due, sent_cancel)
                    time.sleep(0.005)
                stack.send("test/long", {"key": key, "sleep": sleep_s}, id=f"run-{key}")
                if key in cancelled_keys:
                    due.append((time.monotonic() + rnd.uniform(0, cancel_within_s), key))
            while due:
                _send_due(stack, due, sent_cancel)
                time.sleep(0.005)
            report.phases["sent"] = time.monotonic() - started
            while rotate and killer.kinds_killed() != set(SERVICES) and time.monotonic() < t0 + 120:
                time.sleep(0.2)  # the short loop kills each kind of service at least once while runs are live
            if rotate:
                killer.end()  # the short loop: the runs end without further kills
            # every run ends: a cancelled one at once, the others when their sleep is over
            deadline = time.monotonic() + sleep_s + 120
            while True:
                ended = {r["event_id"]: r for r in stack.latest_runs().values()
                         if r["function_id"] == "e2e-long" and r["status"] in ("Completed", "Cancelled", "Failed")}
                if len(ended) >= runs or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            report.phases["ended"] = time.monotonic() - started
            killer.end()
            time.sleep(3)  # late duplicates, if any, would show up now
            latest = [r for r in stack.latest_runs().values() if r["function_id"] == "e2e-long"]
            cancelled_events = [e["data"]["run_id"] for e in stack.system_events_named(CANCELLED)
                                if e["data"].get("function_id") == "e2e-long"]
            finished_events = [e["data"]["run_id"] for e in stack.system_events_named(FINISHED)
                               if e["data"].get("function_id") == "e2e-long"]
        finally:
            killer.end()
            killer.close()
    report.kills = killer.kills
    report.seconds = time.monotonic() - started
    by_event = {r["event_id"]: r for r in latest}
    for key in keys:
        run = by_event.get(f"run-{key}")
        if run is None or run["status"] not in ("Completed", "Cancelled"):
            report.lost_runs.append(key)
            continue
        if key in cancelled_keys:
            if run["status"] != "Cancelled":
                report.lost_cancels.append(key)
            else:
                report.cancel_latency_ms.append(run["ended_at"] - sent_cancel[key] * 1000)
        elif run["status"] == "Cancelled":
            report.wrongly_cancelled.append(key)
    report.duplicate_cancelled = [r for r, n in Counter(cancelled_events).items() if n > 1]
    report.duplicate_finished = [r for r, n in Counter(finished_events).items() if n > 1]
    if len(latest) != runs:
        report.lost_runs.append(f"{len(latest)} runs for {runs} imports")
    return report


def _send_due(stack: Stack, due: list[tuple[float, str]], sent: dict[str, float]) -> None:
    now = time.monotonic()
    for item in [d for d in due if d[0] <= now]:
        due.remove(item)
        sent[item[1]] = time.time()
        stack.send("test/cancel", {"key": item[1]}, id=f"cancel-{item[1]}")
