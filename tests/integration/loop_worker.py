"""A pass-through service in its own process, so a test can SIGKILL it mid-transaction.

usage: python -m tests.integration.loop_worker BOOTSTRAP SOURCE SINK GROUP INSTANCE [KILL_AFTER] [at-once]
"""

from __future__ import annotations

import sys

from pipeline.config import Settings
from pipeline.kafka.loop import ServiceLoop
from pipeline.kafka.passthrough import PassThrough


def main() -> None:
    servers, source, sink, group, instance = sys.argv[1:6]
    kill_after = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] != "-" else None
    at_once = "at-once" in sys.argv[7:]
    settings = Settings(bootstrap_servers=servers, instance_id=instance, batch_size=50)
    loop = ServiceLoop(PassThrough(source, sink, kill_after=kill_after, at_once=at_once), settings, group_id=group)
    loop.install_signal_handlers()
    loop.run()


if __name__ == "__main__":
    main()
