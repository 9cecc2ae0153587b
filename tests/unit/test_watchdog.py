"""The watchdog's rule (pure, with a fake clock): a heart silent past the limit trips it, a beating one never does."""

from __future__ import annotations

import threading

from pipeline.kafka.watchdog import Heart, Watchdog, beat


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_silent_heart_trips_and_a_beating_one_does_not() -> None:
    clock = Clock()
    tripped: list[tuple[str, float]] = []
    dog = Watchdog(30, on_stall=lambda h, silent: tripped.append((h.name, silent)), clock=clock)
    busy, stuck = dog.watch(Heart("matcher", clock)), dog.watch(Heart("canceller", clock))
    clock.now += 29
    busy.last = clock.now
    assert not dog.check() and tripped == []
    clock.now += 2  # canceller silent for 31 s, matcher for 2 s
    assert dog.check()
    assert tripped == [("canceller", 31.0)] and stuck.name == "canceller"


def test_watching_counts_from_now_so_a_slow_start_is_not_a_stall() -> None:
    clock = Clock()
    heart = Heart("run-owner", clock)
    clock.now += 1000  # created long before the watchdog started
    dog = Watchdog(30, on_stall=lambda *_: None, clock=clock)
    dog.watch(heart)
    assert dog.stalled() == []


def test_beat_reaches_the_heart_attached_to_the_calling_thread_only() -> None:
    mine, other = Heart("mine"), Heart("other")
    mine.attach()
    mine.last = other.last = 0.0

    def elsewhere() -> None:
        other.attach()
        other.last = 0.0

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    beat()  # what a restore does once per batch, deep inside the loop's thread
    assert mine.last > 0.0 and other.last == 0.0
