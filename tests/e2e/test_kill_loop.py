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
    """CI's version: 60 imports, 30 cancels, a SIGKILL every 4 s."""
    _check(run_kill_loop(kafka_bootstrap, runs=60, cancels=30, rate=3.0))


@pytest.mark.chaos
def test_kill_loop_long(kafka_bootstrap: str) -> None:
    """The issue's figure: 1,000 imports, 500 cancels, a SIGKILL every 4 s (figures in docs/reliability.md)."""
    _check(run_kill_loop(kafka_bootstrap, runs=1000, cancels=500, rate=10.0))
