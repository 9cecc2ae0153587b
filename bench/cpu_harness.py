"""CPU per record of one service's hot path, without a broker: steadier than the benches on a shared machine.

Run (from the repository root; ``PYTHONPATH`` at another checkout times that code the same way):

    PYTHONPATH=. python bench/cpu_harness.py canceller    # Canceller.process, 100k listeners, 50k signals
    PYTHONPATH=. python bench/cpu_harness.py api-table    # the API's RunTable.apply, 20k runs x 4 states

The benches (``cancel.py``, ``seed_job.py``) measure throughput with a broker, and on two cores shared with
other work their figures move with the machine's load more than with the code. These harnesses call the code
the service loop calls, on records made as the benches make them, and time ``time.process_time()`` around it,
so what they report is the CPU the code costs (the store's background threads included):

* ``canceller``: a cancel-index store of ``--listeners`` (100,000) listeners (``bench/cancel.py``'s records,
  replayed as a restore does, committed every 20,000), then ``--signals`` (50,000) signals, 90% of them under a
  listener's join key, through ``Canceller.process`` in batches of 500. The listener tombstones a batch emits
  are processed after it, as they come back on the topic, and the store commits once per batch (the loop's
  checkpoint). Reported: CPU µs per signal.
* ``api-table``: ``--runs`` (20,000) runs of the seed's import, each with the four states the run owner
  writes (queued, running, sleeping, cancelled; their times in ms since the epoch, as the owner's are), applied
  as the API's ``runs`` reader applies them: reads of 500 records, then ``batch_applied`` (the store's commit).
  Reported: CPU µs per record.

Each prints one JSON line (``--repeat`` runs, each in this process, after one untimed run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.api.tables import RunTable
from pipeline.canceller.service import Canceller
from pipeline.config import Settings
from pipeline.kafka.emitter import Emitter
from pipeline.kafka.store import Store, StoreDir
from pipeline.protocol.commands import start_command
from pipeline.run_owner import state as st
from pipeline.serde import RUN_STATE, Serde

# bench/cancel.py makes the records; it puts its own checkout first on sys.path, but ``pipeline`` is imported
# already, from PYTHONPATH, so another checkout's code is what runs
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cancel import listener_records, signal_records

BATCH = 500


@dataclass
class Record:
    """What the processors read of a consumed record."""

    value_: bytes | None
    topic_: str
    offset_: int
    key_: bytes

    def value(self) -> bytes | None:
        return self.value_

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes:
        return self.key_

    def error(self) -> None:
        return None


def canceller_run(listeners: int, signals: int) -> dict[str, Any]:
    serde = Serde()
    settings = Settings(topic_prefix="harness.", partitions=1)
    canceller = Canceller(settings, serde)
    topic = canceller.index_topic
    index = canceller._new_index(StoreDir(Path(tempfile.mkdtemp(prefix="harness-")), "g", "i").open(topic, 0))
    canceller.indexes[0] = index
    offsets = itertools.count()
    now = int(time.time() * 1000)
    for i, (key, value, _) in enumerate(listener_records(listeners, now, serde)):
        canceller._replay(index, Record(value, topic, next(offsets), key.encode()))  # as a restore applies it
        if i % 20_000 == 19_999:
            index.commit(next(offsets))
    index.commit(next(offsets))
    records = [Record(value, topic, next(offsets), key.encode())
               for key, value, _ in signal_records(signals, listeners, 0.9, now, serde)]
    out = Emitter(serde, settings)
    started = time.process_time()
    for b in range(0, len(records), BATCH):
        for msg in records[b:b + BATCH]:
            canceller.process(msg, out)  # type: ignore[arg-type]
        sent = out._at_once + out._pending  # what the loop's Committing hands to the producer
        tombstones = [key for t, key, value, _, _ in sent if t == topic and value is None]
        out.clear()
        for key in tombstones:  # its own listener tombstones, back from the topic
            raw = key if isinstance(key, bytes) else str(key).encode()
            canceller.process(Record(None, topic, next(offsets), raw), out)  # type: ignore[arg-type]
        out.clear()
        index.commit(next(offsets))
    cpu = time.process_time() - started
    return {"cpu_s": round(cpu, 3), "cpu_us_per_signal": round(cpu / signals * 1e6, 2),
            "cancels": canceller.cancels_sent}


def api_table_run(runs: int) -> dict[str, Any]:
    serde = Serde()
    encoded = []
    t0 = 1_765_000_000_000  # times in ms since the epoch, as the owner writes them: 6-byte varints, not 2
    for i in range(runs):
        event = {"data": {"importId": f"imp-{i}"}, "id": f"EV{i:08d}", "name": "contacts/import.requested",
                 "ts": t0 + i // 100, "user": {}}
        queued = st.start(start_command(f"RUN{i:020d}", "newsletter-app-import-all-contacts", json.dumps(event),
                                        t0 + i // 100, t0 + 5 + i // 100), f"EV{i:08d}", t0 + 5 + i // 100,
                          start_timeout_ms=None).state
        assert queued is not None
        running = st.dispatch(queued, t0 + 10 + i // 100, finish_timeout_ms=None)
        sleeping = st.sleep(running, "pause-0", t0 + 3_600_000, t0 + 20 + i // 100).state
        assert sleeping is not None
        cancelled = st.cancel(sleeping, "cancel_on", "EVCANCEL", t0 + 9_000 + i // 100).state
        encoded.append([serde.encode(RUN_STATE, s) for s in (queued, running, sleeping, cancelled)])
    order = []  # as the owner writes them: a batch of starts (queued, then running), their sleeps, later cancels
    for step_group in ((0, 1, 2), (3,)):
        for b in range(0, runs, BATCH):
            for step in step_group:
                order += [(f"RUN{i:020d}", encoded[i][step]) for i in range(b, min(b + BATCH, runs))]
    table = RunTable("127.0.0.1:1", "runs", store=Store(Path(tempfile.mkdtemp(prefix="harness-")) / "runs"),
                     serde=serde)
    started = time.process_time()
    for b in range(0, len(order), BATCH):
        for key, value in order[b:b + BATCH]:
            table.apply(key, value, 1)
        table.batch_applied()
    cpu = time.process_time() - started
    counts = table.function_counts()
    if counts != {"newsletter-app-import-all-contacts": runs}:
        raise AssertionError(f"the run index disagrees with the runs applied: {counts}")
    return {"cpu_s": round(cpu, 3), "cpu_us_per_record": round(cpu / len(order) * 1e6, 2), "records": len(order)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["canceller", "api-table"])
    ap.add_argument("--listeners", type=int, default=100_000)
    ap.add_argument("--signals", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    def once() -> dict[str, Any]:
        if args.what == "canceller":
            return canceller_run(args.listeners, args.signals)
        return api_table_run(args.runs)

    once()  # untimed: imports, first compilations
    results = [once() for _ in range(args.repeat)]
    key = "cpu_us_per_signal" if args.what == "canceller" else "cpu_us_per_record"
    print(json.dumps({"bench": "cpu_harness", "what": args.what, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "load_avg_1m": round(__import__("os").getloadavg()[0], 2),
                      key: [r[key] for r in results], "runs": results}))


if __name__ == "__main__":
    main()
