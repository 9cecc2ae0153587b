"""The import/cancel job in Quix Streams 3.x, as a Quix user would write it: the other side of bench/seed_job.py.

Two services, each an ``Application`` in its own process (as Quix deploys them: one app per service):

* ``join``: reads ``contacts/import.requested`` and ``contacts/import.cancelled`` events (JSON, keyed by
  importId, pre-produced to two co-partitioned topics), joins each cancel to its import by importId with
  Quix state, and produces one "cancelled" record per pair (the import event, as Inngest's
  ``inngest/function.cancelled`` carries it) to a third topic. ``--join asof`` (default) is Quix's
  ``StreamingDataFrame.join_asof`` (cancels on the left, imports stored on the right);
  ``--join apply`` is the hand-written alternative: both topics concatenated and a stateful ``apply``
  keyed by importId that keeps whichever side came first.
* ``cleanup``: reads the "cancelled" records and runs the cleanup for each (it logs
  ``Import was cancelled: <id>``, as the seed's cleanup function does) and counts them.

Both run with ``processing_guarantee="exactly-once"``. The join runs as a service does, until SIGTERM (Quix
commits a checkpoint every ``commit_interval``, and only then can the cleanup read what it produced); the
cleanup stops by itself after N cleanups with ``app.run(count=N)``, and its stop commits its last checkpoint,
which is when the job is done. Each prints one JSON line with its times (``time.time()``), which
bench/seed_job.py turns into figures:

    python bench/quix_join.py join --broker HOST:PORT --imports T --cancels T --cancelled T --group G --count N
    python bench/quix_join.py cleanup --broker HOST:PORT --cancelled T --group G --count N

Nothing here is timed from outside the apps except the process start; the only additions to plain Quix code
are the ``on_message_processed`` callback that notes when the first and the N-th message were processed, and
the JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from typing import Any

from quixstreams import Application, State

IMPORT = "contacts/import.requested"
CANCEL = "contacts/import.cancelled"

logger = logging.getLogger("bench.quix.cleanup")


class Clock:
    """``on_message_processed``: when the first and the ``n``-th message of the app were processed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first: float | None = None
        self.nth: float | None = None
        self.cpu_at_first = 0.0  # the process's CPU seconds (all threads) when the first message was processed

    def __call__(self, topic: str, partition: int, offset: int) -> None:
        self.count += 1
        if self.first is None:
            self.first = time.time()
            self.cpu_at_first = time.process_time()
        if self.count == self.n:
            self.nth = time.time()


def application(args: argparse.Namespace, clock: Clock, state_dir: str) -> Application:
    return Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",  # the events were produced before the app started
        processing_guarantee="exactly-once",
        commit_interval=args.commit_interval,
        state_dir=state_dir,
        loglevel="WARNING",
        on_message_processed=clock,
    )


def merge(cancel: dict[str, Any], imported: dict[str, Any]) -> dict[str, Any]:
    """The "cancelled" record: which import, the import event itself, and the cancel event."""
    return {"importId": imported["data"]["importId"], "event": imported, "cancel": cancel}


def join_by_state(event: dict[str, Any], state: State) -> dict[str, Any] | None:
    """The join by hand (``--join apply``), keyed by importId: keep the first side seen, emit on the second."""
    if event["name"] == IMPORT:
        cancel = state.get("cancel")
        if cancel is None:
            state.set("import", event)
            return None
        state.delete("cancel")
        return merge(cancel, event)
    imported = state.get("import")
    if imported is None:
        state.set("cancel", event)
        return None
    state.delete("import")
    return merge(event, imported)


def run_join(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock(2 * args.count)
    with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
        app = application(args, clock, state_dir)
        imports = app.dataframe(app.topic(args.imports, key_deserializer="str", value_deserializer="json"))
        cancels = app.dataframe(app.topic(args.cancels, key_deserializer="str", value_deserializer="json"))
        if args.join == "asof":
            cancelled = cancels.join_asof(imports, how="inner", on_merge=merge)
        else:
            cancelled = imports.concat(cancels).apply(join_by_state, stateful=True).filter(lambda v: v is not None)
        cancelled.to_topic(app.topic(args.cancelled, key_serializer="str", value_serializer="json"))
        app.run()  # until SIGTERM, as a deployed service
        stopped = time.time()
    return {"role": "join", "join": args.join, "processed": clock.count, "first_at": clock.first,
            "all_processed_at": clock.nth, "stopped_at": stopped,
            "cpu_seconds": round(time.process_time() - clock.cpu_at_first, 3)}


def run_cleanup(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock(args.count)
    with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
        app = application(args, clock, state_dir)
        cancelled = app.dataframe(app.topic(args.cancelled, key_deserializer="str", value_deserializer="json"))
        # This code will execute after your function is cancelled (the seed's cleanup function)
        cancelled.update(lambda record: logger.info("Import was cancelled: %s", record["importId"]))
        app.run(count=args.count, collect=False)
        stopped = time.time()
    return {"role": "cleanup", "processed": clock.count, "first_at": clock.first, "all_processed_at": clock.nth,
            "committed_at": stopped, "cpu_seconds": round(time.process_time() - clock.cpu_at_first, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=("join", "cleanup"))
    ap.add_argument("--broker", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--count", type=int, required=True, help="imports (= cancels) to expect")
    ap.add_argument("--imports")
    ap.add_argument("--cancels")
    ap.add_argument("--cancelled", required=True)
    ap.add_argument("--join", choices=("asof", "apply"), default="asof")
    ap.add_argument("--commit-interval", type=float, default=5.0, help="Quix's commit_interval (default 5 s)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.time()
    result = run_join(args) if args.role == "join" else run_cleanup(args)
    print(json.dumps({**result, "process_started_at": started}), flush=True)


if __name__ == "__main__":
    main()
