"""Kill loop (issue: never lose a cancel): SIGKILL and restart services while imports start and are cancelled."""

from __future__ import annotations

import pytest

from .killloop import run_kill_loop

pytestmark = pytest.mark.integration


def _check(report) -> None:  # type: ignore[no-untyped-def]
    print("\nkill loop:", report.summary())
    assert report.kills, "the killer never struck"
    assert report.lost_cancels == [], f"cancels lost: {report.lost_cancels}"
    assert report.lost_runs == [], f"runs lost: {report.lost_runs}"
    assert report.duplicate_cancelled == [] and report.duplicate_finished == []
    assert report.wrongly_cancelled == []


def test_kill_loop_short(kafka_bootstrap: str) -> None:
    """CI's version: 40 imports over 10 s, 20 cancels 0-5 s after theirs, 5 s sleeps, a SIGKILL every ~3 s that
    takes matcher, run owner, canceller and worker in turn (each kind killed at least once)."""
    report = run_kill_loop(kafka_bootstrap, runs=40, cancels=20, rate=4.0, kill_every=2.0, sleep_s=5,
                           cancel_within_s=5.0, rotate=True)
    _check(report)
    assert {slot.split("/")[0] for slot in report.kills} == {"matcher", "run-owner", "canceller", "worker"}, \
        report.kills


@pytest.mark.chaos
@pytest.mark.timeout(900)  # 1,000 runs: 3-4 min on the 2-core machine, more under load
def test_kill_loop_long(kafka_bootstrap: str) -> None:
    """The issue's figure: 1,000 imports, 500 cancels, a SIGKILL every 4 s (figures in docs/reliability.md)."""
    _check(run_kill_loop(kafka_bootstrap, runs=1000, cancels=500, rate=10.0))
