"""A hung broker (SIGSTOP: sockets open, no answers) makes a Kafka call block past its deadline. The watchdog
sees the loop stop making progress and the process exits 70; a fresh one takes over and nothing is lost or
doubled. Own single-node broker (it gets frozen), so marked chaos."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from pipeline.broker import embedded
from pipeline.kafka import topics as t
from pipeline.kafka.watchdog import EXIT_STALLED
from pipeline.serde import EVENT, Serde
from pipeline.serde.models import Event
from pipeline.testing.helpers import await_records
from pipeline.testing.stack import Stack

from .apps import app
from .clusters import own_cluster
from .procs import service_process

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]  # own cluster + faults
STALL_MS = 5000


@pytest.fixture
def broker() -> Iterator[tuple[str, str]]:
    with own_cluster(1, "stall") as named:
        yield named


def test_a_call_hung_on_a_frozen_broker_ends_the_process_with_70_and_a_restart_loses_nothing(
        broker: tuple[str, str]) -> None:
    name, bootstrap = broker
    events = 20000  # ~1-2 s of the matcher's work: the freeze must land inside it, not after it
    with Stack(app, bootstrap, services=()) as stack:
        matcher = service_process(stack, "matcher", "m", PIPELINE_STALL_TIMEOUT_MS=str(STALL_MS))
        replacement: subprocess.Popen | None = None
        try:
            time.sleep(6)
            serde, producer = Serde(), stack._producer
            for i in range(events):  # a backlog, so the matcher is inside a transaction when the broker freezes
                event = Event(name="test/wild.stall", data={"i": i}, id=f"s{i}").with_defaults()
                producer.produce(stack.settings.topic(t.EVENTS), key=event.id,
                                 value=serde.encode(EVENT, event.to_record()))
            assert producer.flush(30) == 0
            # Freeze once the matcher is inside the backlog (its first start command is readable), not after a
            # fixed pause: a faster matcher had finished 4,000 events before a 0.3 s pause ended, and an idle loop
            # over a frozen broker is not stuck (it waits in consume, beating), so nothing tripped.
            await_records(bootstrap, stack.settings.topic(t.RUN_COMMANDS), 1, timeout=30)
            frozen = time.monotonic()
            assert embedded.pause_node(name, 0, True)
            try:
                code = matcher.wait(STALL_MS / 1000 + 25)
                detected = time.monotonic() - frozen
            finally:
                embedded.pause_node(name, 0, False)
            assert code == EXIT_STALLED, f"exit code {code}"
            assert detected < STALL_MS / 1000 + 5
            replacement = service_process(stack, "matcher", "m")
            starts = await_records(bootstrap, stack.settings.topic(t.RUN_COMMANDS), events, timeout=90)
            time.sleep(3)
            with pytest.raises(AssertionError):  # exactly once: no start command twice
                await_records(bootstrap, stack.settings.topic(t.RUN_COMMANDS), events + 1, timeout=3)
        finally:
            for proc in (matcher, replacement):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    print(f"\nstall detected and the process exited {detected:.1f} s after the broker froze (limit {STALL_MS} ms)")
    assert len({m.key() for m in starts}) == events
