"""A source's copy rate: a user's JSON topic mapped to events, next to a raw transactional copy of the same topic.

Run (from the repository root):

    PYTHONPATH=. python bench/source.py                    # 50k records
    PYTHONPATH=. python bench/source.py --records 20000 --repeat 1

The source topic (3 partitions, like the services' topics) gets ``--records`` JSON values of ~120 bytes
(``{"kind": "created", "id": i, "customer": ..., "amount": ...}``), keyed, produced before the clock starts. The
source maps each to an event: ``name = 'shop/order.' + record.value.kind``, ``data = {'order': record.value.id,
'customer': record.value.customer, 'key': record.key}``, the id derived from the record's coordinates.

Measured, each from the first record consumed to the group's committed offsets covering every record (polled
every 20 ms): a raw transactional copy and a raw plain copy (confluent-kafka only, as in bench/matcher.py), and
``ServiceLoop(Sources(...))`` exactly-once, as configured. After one untimed transactional copy (warm-up), each
variant runs ``--repeat`` times, interleaved, and the median run counts (every run's figure is in the JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
import uuid
from typing import Any

from confluent_kafka.admin import AdminClient

from bench import _common as c
from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.client import admin_config
from pipeline.kafka.loop import ServiceLoop
from pipeline.sdk.sources import Source
from pipeline.sources.service import Sources

SOURCE = dict(name="'shop/order.' + record.value.kind",
              data="{'order': record.value.id, 'customer': record.value.customer, 'key': record.key}")


def records(n: int) -> list[tuple[bytes, bytes]]:
    rnd = random.Random(7)
    return [(f"order-{i}".encode(), json.dumps({"kind": rnd.choice(("created", "paid", "shipped")), "id": i,
                                                 "customer": f"c-{rnd.randrange(5000)}",
                                                 "amount": rnd.randrange(10_000)}).encode())
            for i in range(n)]


def measure(name: str, servers: str, settings: Settings, topic: str, args: argparse.Namespace,
            targets: dict[tuple[str, int], int]) -> dict[str, Any]:
    group = f"{settings.topic_prefix}g-{name}-{uuid.uuid4().hex[:6]}"
    first: list[float] = []
    stop = threading.Event()
    if name == "source":
        processor = Sources([Source("orders", topic=topic, **SOURCE)], settings)
        orig = processor.process

        def process(msg: Any, out: Any) -> None:
            if not first:
                first.append(time.perf_counter())
                processor.process = orig  # type: ignore[method-assign]
            orig(msg, out)

        processor.process = process  # type: ignore[method-assign]
        loop = ServiceLoop(processor, settings, group_id=group)
        thread = c.run_thread(loop.run)
        stop_fn = loop.stop
    else:
        dst = f"{settings.topic_prefix}copy-{name}-{uuid.uuid4().hex[:6]}"
        c.create_topic(servers, dst, settings.partitions)
        result = c.CopyResult()
        thread = c.run_thread(c.raw_copy, servers, topic, dst, group=group, mode=name.removeprefix("raw-"),
                              batch=settings.batch_size, stop=stop, result=result)
        stop_fn = stop.set
    total = sum(targets.values())
    done = c.copy_until_committed(name, servers, group, targets, args.timeout, stop_fn, thread)
    if name != "source":
        first.append(result.first_consumed)  # type: ignore[arg-type]
    seconds = done - first[0]
    return {"records": total, "seconds": round(seconds, 3), "records_per_s": round(c.rate(total, seconds), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=Settings.model_fields["batch_size"].default)
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds allowed per measured run")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each variant (interleaved); the median counts")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    c.console.print(f"[bold]command[/]: PYTHONPATH=. python bench/source.py --records {args.records} "
                    f"--batch {args.batch} --repeat {args.repeat}")
    data = records(args.records)
    figures: dict[str, Any] = {"records": args.records, "batch": args.batch, "repeat": args.repeat,
                               "mapping": SOURCE, "raw_eos_producer_extra": c.RAW_TX_PRODUCER}
    with c.broker("source") as servers:
        settings = Settings(bootstrap_servers=servers, topic_prefix=c.unique_prefix("source"), partitions=3,
                            instance_id=uuid.uuid4().hex[:8], batch_size=args.batch)
        t.create_topics(AdminClient(admin_config(servers)), settings)
        topic = f"{settings.topic_prefix}user-orders"
        c.create_topic(servers, topic, settings.partitions)
        with c.progress_bar("produce records", args.records) as update:
            c.raw_produce(servers, topic, iter(data), args.records, update)
        targets = {(topic, p): o for p, o in c.end_offsets(servers, topic).items()}
        names = ["raw-eos", "source", "raw-plain"]
        measure("raw-eos", servers, settings, topic, args, targets)  # untimed warm-up
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for _ in range(args.repeat):
            for name in names:
                runs[name].append(measure(name, servers, settings, topic, args, targets))
    for name in names:
        ordered = sorted(runs[name], key=lambda r: r["records_per_s"])
        figures[name.replace("-", "_")] = {**ordered[(len(ordered) - 1) // 2],
                                           "all_records_per_s": [r["records_per_s"] for r in runs[name]]}
    s, raw_eos, raw_plain = figures["source"], figures["raw_eos"], figures["raw_plain"]
    figures["ratio_source_vs_raw_eos"] = round(s["records_per_s"] / raw_eos["records_per_s"], 3)
    figures["ratio_source_vs_raw_plain"] = round(s["records_per_s"] / raw_plain["records_per_s"], 3)
    rows = [
        ("raw copy, transactional", c.fmt_rate(raw_eos["records_per_s"]), "records/s, one transaction per batch"),
        ("raw copy, plain", c.fmt_rate(raw_plain["records_per_s"]), "records/s, no transaction"),
        ("source (JSON -> events)", c.fmt_rate(s["records_per_s"]), "records/s, exactly-once, CEL mapping"),
        ("ratio source / raw transactional", f"{figures['ratio_source_vs_raw_eos']:.2f}", ""),
        ("ratio source / raw plain", f"{figures['ratio_source_vs_raw_plain']:.2f}", ""),
    ]
    c.out.print(c.results_table(f"source: {args.records:,} JSON records mapped to events", rows))
    c.emit("source", figures)


if __name__ == "__main__":
    main()
