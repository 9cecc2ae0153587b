"""What rate limit and idempotency cost the run owner per start command, against the same function without them.

Run (from the repository root):

    PYTHONPATH=. python bench/flow_admission.py              # 20,000 starts per case
    PYTHONPATH=. python bench/flow_admission.py --starts 50000

No broker: a ``RunOwner`` is fed start commands directly, as its loop would (decode, process, and ``end_batch``
every 100 records, which encodes the run states), with its run table and its rate-limit table in real state
stores (RocksDB, in a temp dir) and the transaction's end simulated by committing the stores. Per case, starts of
one function over 1,000 keys (the rate limit allows 1 per key per day, so most starts are dropped and recorded;
idempotency keys are unique, so every start is admitted and writes its key). The figure is CPU time per start.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from pathlib import Path

import pipeline
from pipeline.config import Settings
from pipeline.kafka.emitter import Emitter
from pipeline.kafka.store import Store
from pipeline.run_owner.limits import LimitTable
from pipeline.run_owner.owner import RunOwner
from pipeline.run_owner.rearm import rearm
from pipeline.run_owner.table import RunTable
from pipeline.sdk.app import Registry
from pipeline.serde import RUN_COMMAND, Serde

app = pipeline.Inngest(app_id="bench-flow")


def _handler(ctx: pipeline.ContextSync) -> None:
    return None


PLAIN = app.create_function(fn_id="plain", trigger=pipeline.TriggerEvent(event="b/plain"))(_handler)
LIMITED = app.create_function(fn_id="limited", trigger=pipeline.TriggerEvent(event="b/limited"),
                              rate_limit=pipeline.RateLimit(limit=1, period=datetime.timedelta(hours=24),
                                                            key="event.data.key"))(_handler)
ONCE = app.create_function(fn_id="once", trigger=pipeline.TriggerEvent(event="b/once"),
                           idempotency="event.data.order")(_handler)


def run_case(fn: pipeline.Function, starts: int, root: Path) -> tuple[float, int]:
    """CPU seconds per start, and how many were dropped."""
    serde = Serde()
    settings = Settings(gate_max_wait_ms=0)
    owner = RunOwner(Registry([app]), settings)
    owner.tables[0] = RunTable(Store(root / f"{fn.fn_id}-runs"), serde)
    owner.admission.tables[0] = LimitTable(Store(root / f"{fn.fn_id}-limits"), serde)
    rearm(owner, 0, time.time_ns() // 1_000_000)
    out = Emitter(serde, settings)
    base = 1_800_000_000_000
    messages = []
    for n in range(starts):
        event = {"id": f"e{n}", "name": fn.triggers[0].event, "data": {"key": n % 1000, "order": n}, "user": {},
                 "ts": base + n}
        value = serde.encode(RUN_COMMAND, {
            "kind": "start", "run_id": f"{fn.fn_id}-{n:08d}", "function_id": fn.id, "ts": base + n,
            "event": json.dumps(event), "received_at": base + n, "reason": None, "source_id": None, "attempt": 0,
            "step_id": None})
        messages.append(_Msg(value, n))
    cpu = time.process_time()
    for i, msg in enumerate(messages):
        owner.process(msg, out)  # type: ignore[arg-type]
        if i % 100 == 99:
            owner.end_batch(out)
            out.clear()
            owner.tables[0].commit(None)
            owner.admission.tables[0].commit(None)
    per_start = (time.process_time() - cpu) / starts
    return per_start, owner.admission.dropped


class _Msg:
    """What the owner reads of a consumed record."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value, self._offset = value, offset

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp:
        for label, fn in (("no option", PLAIN), ("rate_limit (1/day per key, 1,000 keys)", LIMITED),
                          ("idempotency (unique keys)", ONCE)):
            per_start, dropped = run_case(fn, args.starts, Path(tmp))
            print(f"{label:42s} {per_start * 1e6:7.1f} us CPU per start   dropped {dropped:6d} of {args.starts}")


if __name__ == "__main__":
    main()
