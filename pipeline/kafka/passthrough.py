"""A pass-through processor: copies each record of one topic to another, unchanged.

It is the smallest real service on the shared loop, used by the loop's own exactly-once and
dead-letter tests and by ``bench/baseline.py`` to measure the loop's overhead against raw
confluent-kafka.
"""

from __future__ import annotations

import os
import signal
import time

from confluent_kafka import Message

from .emitter import Emitter
from .processor import Processor


class PassThrough(Processor):
    """Copy records from ``source`` to ``sink``. A value starting with ``poison`` is refused (dead-lettered).
    ``at_once``: send the copies outside the transaction (see :meth:`Emitter.send`)."""

    name = "passthrough"

    def __init__(self, source: str, sink: str, *, kill_after: int | None = None, at_once: bool = False) -> None:
        self.source = source
        self.sink = sink
        self.kill_after = kill_after
        self.at_once = at_once
        self.seen = 0

    def topics(self) -> list[str]:
        return [self.source]

    def process(self, msg: Message, out: Emitter) -> None:
        value = msg.value()
        if value is not None and value.startswith(b"poison"):
            raise ValueError("poison record refused")
        out.send(self.sink, msg.key(), None, value, at_once=self.at_once)
        self.seen += 1
        if self.kill_after is not None and self.seen >= self.kill_after:
            # Test hook: die hard with output produced (the earlier records of this batch reach the
            # broker within the linger) but the transaction not committed.
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
