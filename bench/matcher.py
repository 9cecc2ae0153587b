"""Matcher throughput with 1,000 registered functions, next to a raw copy of the same events topic.

Run (from the repository root):

    PYTHONPATH=. python bench/matcher.py                   # 50k events, 1,000 functions
    PYTHONPATH=. python bench/matcher.py --events 20000 --repeat 1 --profile

The app: 1,000 functions over 200 distinct trigger names (``bench/e000`` … ``bench/e199``), five
functions per name slot:

* 400 plain triggers;
* 200 triggers with ``event.data.plan == "pro" && event.data.amount > 100``;
* 200 plain triggers with ``cancel=[Cancel(event="bench/cancel<k>", if_exp="async.data.id == event.data.id")]``
  (each run started registers one cancel listener);
* 100 wildcard triggers ``bench/w<k>.*`` and 100 triggers with ``event.data.amount > 150``.

The events (``--events``, produced before the clock starts, all to the events topic):
55% trigger names (plan pro/free, amount 0–199), 25% names nobody listens to, 10% wildcard
names, 10% cancel event names (each writes a cancel signal).

Measured, each from the first record consumed to the group's committed offsets covering every
event (a poller reads the committed offsets every 20 ms):

* raw transactional copy and raw plain copy of the events topic (confluent-kafka only; the
  transactional one with ``retry.backoff.ms=10`` as the loop's transactional producer, see
  ``_common.RAW_TX_PRODUCER``);
* ``ServiceLoop(Matcher(...))`` with exactly-once (the default), as configured; also its CPU per event (the loop
  thread's, and the whole process's), which a shared machine disturbs less than events/s.

After one untimed transactional copy (warm-up), each variant runs ``--repeat`` times,
interleaved, and the median run counts (every run's figure is in the JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
import uuid

import _common as c
from confluent_kafka.admin import AdminClient

import pipeline
from pipeline.config import Settings
from pipeline.kafka import topics as t
from pipeline.kafka.client import admin_config
from pipeline.kafka.loop import ServiceLoop
from pipeline.matcher.service import Matcher
from pipeline.sdk.app import Registry
from pipeline.serde import EVENT, Serde

NAMES = 200


def build_app(functions: int) -> pipeline.Inngest:
    app = pipeline.Inngest(app_id="bench")

    def handler(ctx):  # never executed: only the matcher runs
        return None

    for i in range(functions):
        group, slot = divmod(i, NAMES)
        name = f"bench/e{slot:03d}"
        kind = group % 5
        cancel = None
        if kind in (0, 1):
            trig = pipeline.TriggerEvent(event=name)
        elif kind == 2:
            trig = pipeline.TriggerEvent(event=name, expression='event.data.plan == "pro" && event.data.amount > 100')
        elif kind == 3:
            trig = pipeline.TriggerEvent(event=name)
            cancel = [pipeline.Cancel(event=f"bench/cancel{slot % 20}", if_exp="async.data.id == event.data.id")]
        elif slot % 2 == 0:
            trig = pipeline.TriggerEvent(event=f"bench/w{slot % 20}.*")
        else:
            trig = pipeline.TriggerEvent(event=name, expression="event.data.amount > 150")
        app.create_function(fn_id=f"f{i:04d}", trigger=trig, cancel=cancel)(handler)
    return app


def events(n: int, seed: int = 7) -> list[tuple[str, bytes]]:
    rnd = random.Random(seed)
    serde = Serde()
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        roll = rnd.random()
        slot = rnd.randrange(NAMES)
        if roll < 0.55:
            name = f"bench/e{slot:03d}"
        elif roll < 0.80:
            name = f"other/n{slot:03d}"
        elif roll < 0.90:
            name = f"bench/w{slot % 20}.x{slot}"
        else:
            name = f"bench/cancel{slot % 20}"
        data = {"id": f"id-{rnd.randrange(n)}", "plan": rnd.choice(("pro", "free")), "amount": rnd.randrange(200)}
        eid = f"{uuid.UUID(int=rnd.getrandbits(128)).hex}"
        record = {"id": eid, "name": name, "data": json.dumps(data, separators=(",", ":")), "user": "{}",
                  "ts": now + i, "v": None}
        out.append((eid, serde.encode(EVENT, record)))
    return out


def measure(name: str, servers: str, settings: Settings, registry: Registry, args: argparse.Namespace,
            targets: dict, profile: bool = False) -> dict:
    group = f"{settings.topic_prefix}g-{name}-{uuid.uuid4().hex[:6]}"
    src = settings.topic(t.EVENTS)
    first: list[float] = []
    stop = threading.Event()
    matcher: Matcher | None = None
    # CPU seconds from the first record to the stop: the loop thread's (its clock read from the poller's thread)
    # and the whole process's (the loop, librdkafka's threads, the poller); steadier than events/s on a shared
    # machine
    cpu: dict[str, float] = {}
    if name.startswith("matcher"):
        matcher = Matcher(registry, settings)
        orig = matcher.process

        def process(msg, out):
            if not first:
                first.append(time.perf_counter())
                cpu["clock"] = time.pthread_getcpuclockid(threading.get_ident())
                cpu["loop0"], cpu["process0"] = time.clock_gettime(cpu["clock"]), time.process_time()
                matcher.process = orig  # type: ignore[method-assign]
            return orig(msg, out)

        matcher.process = process  # type: ignore[method-assign]
        loop = ServiceLoop(matcher, settings, group_id=group)
        prof_box: list = []

        def body() -> None:
            if not profile:
                loop.run()
                return
            from pyinstrument import Profiler  # profiles the thread that starts it

            prof = Profiler(interval=0.0005)
            prof.start()
            try:
                loop.run()
            finally:
                prof.stop()
                prof_box.append(prof)

        thread = c.run_thread(body)

        def stop_fn() -> None:
            if "clock" in cpu:
                cpu["loop1"], cpu["process1"] = time.clock_gettime(cpu["clock"]), time.process_time()
            loop.stop()
    else:
        dst = f"{settings.topic_prefix}copy-{name}-{uuid.uuid4().hex[:6]}"
        c.create_topic(servers, dst, settings.partitions)
        result = c.CopyResult()
        mode = name.removeprefix("raw-")
        thread = c.run_thread(c.raw_copy, servers, src, dst, group=group, mode=mode, batch=settings.batch_size,
                              stop=stop, result=result)
        stop_fn = stop.set
    total = sum(targets.values())
    done = c.copy_until_committed(name, servers, group, targets, args.timeout, stop_fn, thread)
    if matcher is None:
        first.append(result.first_consumed)  # type: ignore[arg-type]
    seconds = done - first[0]
    row = {"events": total, "seconds": round(seconds, 3), "events_per_s": round(c.rate(total, seconds), 1)}
    if matcher is not None:
        row.update({"runs_started": matcher.runs_started, "signals_sent": matcher.signals_sent,
                    "runs_per_s": round(c.rate(matcher.runs_started, seconds), 1)})
        if "loop1" in cpu:
            row["loop_cpu_us_per_event"] = round((cpu["loop1"] - cpu["loop0"]) / total * 1e6, 1)
            row["process_cpu_us_per_event"] = round((cpu["process1"] - cpu["process0"]) / total * 1e6, 1)
        if prof_box:
            row["profile"] = prof_box[0]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--functions", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=Settings.model_fields["batch_size"].default)
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds allowed per measured run")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each variant (interleaved); the median counts")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed transactional copy that warms the broker up first")
    ap.add_argument("--profile", action="store_true",
                    help="one extra matcher run under pyinstrument (pip install pyinstrument); prints its call tree")
    args = ap.parse_args()
    if args.profile:
        try:
            import pyinstrument  # noqa: F401  (fail now, not after the measured runs)
        except ModuleNotFoundError:
            ap.error("--profile needs pyinstrument: pip install pyinstrument")
    logging.basicConfig(level=logging.WARNING)
    c.console.print(f"[bold]command[/]: PYTHONPATH=. python bench/matcher.py --events {args.events} "
                    f"--functions {args.functions} --batch {args.batch} --repeat {args.repeat}"
                    + (" --profile" if args.profile else ""))
    started = time.perf_counter()
    app = build_app(args.functions)
    registry = Registry([app])
    build_s = time.perf_counter() - started
    data = events(args.events)
    figures: dict = {"events": args.events, "functions": args.functions, "trigger_names": NAMES,
                     "batch": args.batch, "repeat": args.repeat, "app_build_seconds": round(build_s, 3),
                     "raw_eos_producer_extra": c.RAW_TX_PRODUCER}
    with c.broker("matcher") as servers:
        settings = Settings(bootstrap_servers=servers, topic_prefix=c.unique_prefix("matcher"), partitions=3,
                            instance_id=uuid.uuid4().hex[:8], batch_size=args.batch)
        t.create_topics(AdminClient(admin_config(servers)), settings)
        src = settings.topic(t.EVENTS)
        with c.progress_bar("produce events", args.events) as update:
            c.raw_produce(servers, src, iter(data), args.events, update)
        targets = {(src, p): o for p, o in c.end_offsets(servers, src).items()}
        names = ["raw-eos", "matcher", "raw-plain"]
        if args.warmup:  # untimed: broker JIT, transaction and group coordinators
            measure("raw-eos", servers, settings, registry, args, targets)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for _ in range(args.repeat):
            for name in names:
                runs[name].append(measure(name, servers, settings, registry, args, targets))
        for name in names:
            ordered = sorted(runs[name], key=lambda r: r["events_per_s"])
            figures[name.replace("-", "_")] = {**ordered[(len(ordered) - 1) // 2],
                                               "all_events_per_s": [r["events_per_s"] for r in runs[name]]}
        figures["matcher"]["all_loop_cpu_us_per_event"] = [r.get("loop_cpu_us_per_event") for r in runs["matcher"]]
        profile_text = None
        if args.profile:
            prof = measure("matcher", servers, settings, registry, args, targets, profile=True).get("profile")
            if prof is not None:
                profile_text = prof.output_text(unicode=True, color=False)

    m, raw_eos, raw_plain = figures["matcher"], figures["raw_eos"], figures["raw_plain"]
    figures["ratio_matcher_vs_raw_eos"] = round(m["events_per_s"] / raw_eos["events_per_s"], 3)
    figures["ratio_matcher_vs_raw_plain"] = round(m["events_per_s"] / raw_plain["events_per_s"], 3)
    rows = [
        ("raw copy, transactional", c.fmt_rate(raw_eos["events_per_s"]),
         "events/s, one transaction per batch; retry.backoff.ms=10 as the loop"),
        ("raw copy, plain", c.fmt_rate(raw_plain["events_per_s"]), "events/s, no transaction"),
        ("matcher events", c.fmt_rate(m["events_per_s"]), f"{args.functions} functions, exactly-once, as configured"),
        ("matcher runs started", c.fmt_rate(m["runs_per_s"]), f"{m['runs_started']:,} runs, "
                                                             f"{m['signals_sent']:,} cancel signals"),
        ("matcher CPU per event", f"{m.get('loop_cpu_us_per_event', 0):.1f} µs",
         f"loop thread (whole process {m.get('process_cpu_us_per_event', 0):.1f} µs), first record to stop"),
        ("ratio matcher / raw transactional", f"{figures['ratio_matcher_vs_raw_eos']:.2f}", ""),
        ("ratio matcher / raw plain", f"{figures['ratio_matcher_vs_raw_plain']:.2f}", ""),
    ]
    rows.append((f"app build ({args.functions:,} functions)", f"{build_s:.2f} s", "validate + compile expressions"))
    c.out.print(c.results_table(f"matcher: {args.events:,} events, {args.functions} functions", rows))
    if profile_text:
        c.out.print(profile_text)
    c.emit("matcher", figures)


if __name__ == "__main__":
    main()
