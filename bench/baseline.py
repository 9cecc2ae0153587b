"""Raw confluent-kafka throughput next to the shared ServiceLoop's pass-through, in one run, as ratios.

Run (from the repository root):

    PYTHONPATH=. python bench/baseline.py                 # 200k records of 200 bytes
    PYTHONPATH=. python bench/baseline.py --records 50000 --repeat 1 --profile

What it measures, on one fresh embedded broker (or ``PIPELINE_BOOTSTRAP_SERVERS``):

1. raw produce: ``--records`` keyed records of ``--value-bytes`` with the loop's producer settings
   (acks=all, idempotent, linger 5 ms, lz4), from the first ``produce`` to ``flush`` returning;
2. raw consume: a plain Consumer (partitions assigned from the start) with ``consume(1000)`` over that
   topic, from ``assign`` to the last record;
3. copy loops from that topic to a fresh one, each measured from the first to the last output record
   readable by a read_committed reader (throughput = records / that time):
   * raw plain copy (produce, poll, async offset commit; no flush, no transaction),
   * raw at-least-once copy (produce, flush, sync commit per batch),
   * raw transactional copy (begin, produce, send_offsets_to_transaction, commit per batch), its
     producer with ``retry.backoff.ms=10`` / ``retry.backoff.max.ms=100`` as the loop's transactional
     producer (``pipeline/kafka/client.py: producer_config``; ``_common.RAW_TX_PRODUCER``),
   * ``ServiceLoop(PassThrough)`` with exactly_once=True and exactly_once=False, as configured.
   Every copier consumes up to ``--batch`` records per batch (the loop's ``PIPELINE_BATCH_SIZE``, 500;
   the raw copiers with ``consume(batch, 0.1)``, the loop with its own eager consume).
   Each copier runs ``--repeat`` times (interleaved, after an untimed warm-up copy) and the median
   run counts; every run's rate is in the JSON (``all_rates``).

``--profile [VARIANT]`` runs one copier (default loop-eos; any of the copiers above) once more under
pyinstrument (``pip install pyinstrument``) and prints its call tree, to find where the loop's time goes.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import uuid

import _common as c

from pipeline.config import Settings
from pipeline.kafka.loop import ServiceLoop
from pipeline.kafka.passthrough import PassThrough

PARTITIONS = 3
#: The copiers, in the order they run (interleaved per repeat).
COPIERS = ["raw-eos", "loop-eos", "raw-plain", "raw-alo", "loop-alo"]


def records(n: int, size: int) -> list[tuple[bytes, bytes]]:
    """Keyed JSON-ish values of exactly ``size`` bytes, built before the clock starts."""
    pad = "x" * size
    out = []
    for i in range(n):
        head = f'{{"i":{i},"name":"bench/record","pad":"'
        out.append((f"k{i:09d}".encode(), ((head + pad)[: size - 2] + '"}').encode()))
    return out


def run_copier(name: str, servers: str, src: str, n: int, args: argparse.Namespace, prefix: str,
               profile: bool = False) -> dict:
    """One copy run: fresh destination topic, reader on it, the copier in this thread until all is readable."""
    dst = f"{prefix}dst-{name}-{uuid.uuid4().hex[:6]}"
    c.create_topic(servers, dst, PARTITIONS)
    reader = c.Reader(servers, dst, expect=n)
    stop = threading.Event()
    group = f"{prefix}g-{name}-{uuid.uuid4().hex[:6]}"
    first_consumed: list[float] = []
    loop: ServiceLoop | None = None
    if name.startswith("loop"):
        settings = Settings(bootstrap_servers=servers, topic_prefix=prefix, instance_id=uuid.uuid4().hex[:8],
                            batch_size=args.batch)
        proc = PassThrough(src, dst)
        orig = proc.process

        def process(msg, out, _orig=orig):  # note the first consumed record, then plain PassThrough
            if not first_consumed:
                first_consumed.append(time.perf_counter())
            proc.process = _orig
            return _orig(msg, out)

        proc.process = process  # type: ignore[method-assign]
        loop = ServiceLoop(proc, settings, group_id=group, exactly_once=name == "loop-eos")
        body = loop.run
        stop_fn = loop.stop
    else:
        mode = name.removeprefix("raw-")
        result = c.CopyResult()

        def body() -> None:
            c.raw_copy(servers, src, dst, group=group, mode=mode, batch=args.batch, stop=stop, result=result)
            if result.first_consumed is not None:
                first_consumed.append(result.first_consumed)

        stop_fn = stop.set

    def stopper() -> None:
        try:
            reader.wait(timeout=args.timeout)
        except TimeoutError as exc:
            c.console.print(f"[red]{name}: {exc}")
        stop_fn()

    watcher = threading.Thread(target=stopper, daemon=True)
    watcher.start()
    with c.progress_bar(f"copy {name}", n) as update:
        def tick() -> None:
            while watcher.is_alive():
                update(reader.count)
                time.sleep(0.1)
            update(reader.count)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        prof = None
        if profile:
            from pyinstrument import Profiler

            prof = Profiler(interval=0.0005)
            prof.start()
        body()
        if prof is not None:
            prof.stop()
        watcher.join()
        ticker.join()
    reader.close()
    if reader.last is None or reader.first is None:
        raise RuntimeError(f"{name}: only {reader.count} of {n} records became readable")
    span = reader.last - reader.first
    out = {"records": n, "seconds": round(span, 3), "rate": round(c.rate(n - 1, span), 1),
           "rate_from_first_consumed": round(c.rate(n, reader.last - first_consumed[0]), 1) if first_consumed else None}
    if prof is not None:
        out["profile"] = prof
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--value-bytes", type=int, default=200)
    ap.add_argument("--batch", type=int, default=Settings.model_fields["batch_size"].default,
                    help="records per consumed batch for every copier (the loop's PIPELINE_BATCH_SIZE)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each copier (interleaved); the median counts")
    ap.add_argument("--warmup", type=int, default=50_000,
                    help="records of one untimed transactional copy first (broker JIT, coordinators); 0 = none")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per copy run")
    ap.add_argument("--profile", nargs="?", const="loop-eos", default=None, metavar="VARIANT", choices=COPIERS,
                    help="profile one extra run of VARIANT (default loop-eos; also loop-alo, raw-eos, ...) "
                         "with pyinstrument")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n = args.records
    c.console.print(f"[bold]command[/]: PYTHONPATH=. python bench/baseline.py --records {n} "
                    f"--value-bytes {args.value_bytes} --batch {args.batch} --repeat {args.repeat} "
                    f"--warmup {args.warmup}")
    figures: dict = {"records": n, "value_bytes": args.value_bytes, "batch": args.batch, "repeat": args.repeat,
                     "warmup": args.warmup, "raw_eos_producer_extra": c.RAW_TX_PRODUCER}
    with c.broker("baseline") as servers:
        prefix = c.unique_prefix("baseline")
        src = f"{prefix}src"
        c.create_topic(servers, src, PARTITIONS)
        data = records(n, args.value_bytes)
        with c.progress_bar("raw produce", n) as update:
            secs = c.raw_produce(servers, src, iter(data), n, update)
        figures["raw_produce"] = {"seconds": round(secs, 3), "rate": round(c.rate(n, secs), 1)}
        with c.progress_bar("raw consume (consume(1000))", n) as update:
            span = c.raw_consume(servers, src, n, 1000, update)
        figures["raw_consume"] = {"seconds": round(span, 3), "rate": round(c.rate(n, span), 1)}

        if args.warmup:
            warm = f"{prefix}warmup"
            c.create_topic(servers, warm, PARTITIONS)
            c.raw_produce(servers, warm, iter(data[: args.warmup]), args.warmup)
            run_copier("raw-eos", servers, warm, args.warmup, args, prefix)
            run_copier("loop-alo", servers, warm, args.warmup, args, prefix)
        names = COPIERS
        runs: dict[str, list[dict]] = {k: [] for k in names}
        for _ in range(args.repeat):
            for name in names:
                runs[name].append(run_copier(name, servers, src, n, args, prefix))
        for name in names:
            ordered = sorted(runs[name], key=lambda r: r["rate"])
            median = ordered[(len(ordered) - 1) // 2]  # the lower median for an even count
            figures[name.replace("-", "_")] = {**median, "all_rates": [r["rate"] for r in runs[name]]}
        profile_text = None
        if args.profile:
            try:
                prof = run_copier(args.profile, servers, src, n, args, prefix, profile=True).pop("profile")
                profile_text = prof.output_text(unicode=True, color=False, show_all=False)
            except ModuleNotFoundError:
                c.console.print("[yellow]--profile needs pyinstrument: pip install pyinstrument")

    r = {k: figures[k.replace("-", "_")]["rate"] for k in names}
    ratios = {
        "loop_eos_vs_raw_eos": r["loop-eos"] / r["raw-eos"],
        "loop_eos_vs_raw_plain": r["loop-eos"] / r["raw-plain"],
        "loop_eos_vs_raw_alo": r["loop-eos"] / r["raw-alo"],
        "loop_alo_vs_raw_alo": r["loop-alo"] / r["raw-alo"],
        "loop_alo_vs_raw_plain": r["loop-alo"] / r["raw-plain"],
        "raw_eos_vs_raw_plain": r["raw-eos"] / r["raw-plain"],
    }
    figures["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    figures["target_loop_eos_vs_raw_eos_ge_0_5"] = ratios["loop_eos_vs_raw_eos"] >= 0.5

    rows = [
        ("raw produce", c.fmt_rate(figures["raw_produce"]["rate"]), "acks=all, idempotent, linger 5 ms, lz4"),
        ("raw consume", c.fmt_rate(figures["raw_consume"]["rate"]), "consume(1000), from assign to last"),
        ("raw copy, plain", c.fmt_rate(r["raw-plain"]), "produce + async commit, no flush"),
        ("raw copy, at-least-once", c.fmt_rate(r["raw-alo"]), "produce, flush, sync commit per batch"),
        ("raw copy, transactional", c.fmt_rate(r["raw-eos"]),
         "one transaction per batch; retry.backoff.ms=10 as the loop"),
        ("ServiceLoop pass-through, EOS", c.fmt_rate(r["loop-eos"]), "exactly_once=True, as configured"),
        ("ServiceLoop pass-through, ALO", c.fmt_rate(r["loop-alo"]), "exactly_once=False, as configured"),
        ("ratio loop EOS / raw transactional", f"{ratios['loop_eos_vs_raw_eos']:.2f}",
         "target ≥ 0.5; both retry.backoff.ms=10"),
        ("ratio loop EOS / raw plain copy", f"{ratios['loop_eos_vs_raw_plain']:.2f}", ""),
        ("ratio loop EOS / raw at-least-once copy", f"{ratios['loop_eos_vs_raw_alo']:.2f}", ""),
        ("ratio loop ALO / raw at-least-once copy", f"{ratios['loop_alo_vs_raw_alo']:.2f}", "same guarantees"),
        ("ratio loop ALO / raw plain copy", f"{ratios['loop_alo_vs_raw_plain']:.2f}", ""),
        ("ratio raw transactional / raw plain", f"{ratios['raw_eos_vs_raw_plain']:.2f}", "cost of transactions"),
    ]
    c.out.print(c.results_table(f"baseline: {n:,} records of {args.value_bytes} B, batch {args.batch}", rows))
    if profile_text:
        c.out.print(profile_text)
    c.emit("baseline", figures)


if __name__ == "__main__":
    main()
