"""``pipeline replay group|topic|runs`` and ``pipeline dlq list|show|replay``: the operator commands.

Thin: parsing, confirmation and display (rich); the work is in :mod:`pipeline.ops`.
"""

from __future__ import annotations

import json
import signal
import time

import typer
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from .config import Settings
from .kafka import topics as t
from .kafka.client import admin_config, bootstrap, consumer_config
from .ops import deadletters, groups, runs_replay, topic_replay
from .ops.positions import BadPosition, Position, parse_offsets, parse_position, parse_time
from .serde import Serde
from .serde.registry import TOOL_WAIT_S, RegistryUnavailable, confluent_reader

replay_app = typer.Typer(help="Replay runs, re-publish a topic range, or move a service's offsets.",
                         no_args_is_help=True)
dlq_app = typer.Typer(help="Read, show and re-publish dead letters.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]{message}[/red]")
    return typer.Exit(code)


class _Rate(ProgressColumn):
    """Records per second."""

    def render(self, task: object) -> Text:
        speed = getattr(task, "speed", None)
        return Text(f"{speed:,.0f} rec/s" if speed else "- rec/s", style="progress.data.speed")


# -- replay group ---------------------------------------------------------------------------------------------


@replay_app.command("group")
def replay_group(service: str = typer.Argument(..., help="matcher | run-owner | canceller | worker"),
                 to_time: str | None = typer.Option(None, "--to-time", help="ISO-8601, -2h, or ms"),
                 to_offset: str | None = typer.Option(None, "--to-offset", help="N (every partition) or p:o,..."),
                 topic: str | None = typer.Option(None, "--topic", help="one of the service's topics, unprefixed"),
                 execute: bool = typer.Option(False, "--execute", help="move the offsets (default: a dry run)"),
                 dry_run: bool = typer.Option(False, "--dry-run", help="only show the plan (the default)")) -> None:
    """Move a service's consumer-group offsets, as kafka-consumer-groups --reset-offsets; refused while the
    group has live members. Run ids derive from event ids, so a rewound matcher starts nothing twice."""
    service, deprecated = groups.current_name(service)
    if deprecated:
        err.print(f"[yellow]{deprecated}[/yellow]")
    if (to_time is None) == (to_offset is None):
        raise _fail("give exactly one of --to-time or --to-offset")
    settings = Settings()
    try:
        group = groups.group_of(settings, service)
        to = Position(time_ms=parse_time(to_time)) if to_time is not None else parse_offsets(to_offset or "")
    except (ValueError, BadPosition) as exc:
        raise _fail(str(exc)) from None
    names = [topic] if topic else list(groups.SERVICE_TOPICS[service])
    if any(n not in groups.SERVICE_TOPICS[service] for n in names):
        raise _fail(f"{service} reads {', '.join(groups.SERVICE_TOPICS[service])}, not {topic}")
    consumer = Consumer(consumer_config(bootstrap(settings), group))
    try:
        moves = groups.plan(consumer, [settings.topic(n) for n in names], to)
        table = Table("topic", "partition", "current", "target", title=f"group {group}")
        for m in moves:
            table.add_row(m.topic, str(m.partition), "-" if m.current is None else str(m.current), str(m.target))
        out.print(table)
        if not execute or dry_run:
            out.print("[yellow]dry run: nothing moved (add --execute)[/yellow]")
            return
        members = groups.live_members(AdminClient(admin_config(bootstrap(settings))), group, wait_s=12.0)
        if members:
            raise _fail(f"group {group} has live members ({', '.join(members)}): stop them first", 1)
        groups.execute(consumer, moves)
        for m in moves:
            typer.echo(f"{m.topic}[{m.partition}] -> {m.target}")
    finally:
        consumer.close()


# -- replay topic ---------------------------------------------------------------------------------------------


@replay_app.command("topic")
def replay_topic(src: str = typer.Argument(..., help="source topic, unprefixed (events, dead-letter, ...)"),
                 to: str = typer.Option(..., "--to", help="destination topic, unprefixed"),
                 from_: str = typer.Option(..., "--from", help="a time (ISO-8601, -2h, ms) or p:o,..."),
                 until: str | None = typer.Option(None, "--until", help="exclusive end: a time or p:o (default: now)"),
                 where: str | None = typer.Option(None, "--where",
                                                  help="CEL over event, e.g. event.data.plan == 'pro'"),
                 name: str | None = typer.Option(None, "--name", help="event name glob, e.g. 'orders/*'"),
                 dry_run: bool = typer.Option(False, "--dry-run", help="count per partition, copy nothing")) -> None:
    """Re-publish a range of records; stop it (Ctrl-C) and run the same command again to resume, without
    duplicates."""
    settings = Settings()
    servers = bootstrap(settings)
    try:
        job = topic_replay.Job(settings.topic(src), settings.topic(to), parse_position(from_),
                               parse_position(until) if until else None, where, name)
        topic_replay.selector(where, name)
    except (ValueError, BadPosition) as exc:
        raise _fail(str(exc)) from None
    confluent = confluent_reader(settings, wait_s=TOOL_WAIT_S)
    if dry_run:
        counts = topic_replay.dry_run(servers, job, confluent)
        table = Table("partition", "in range", "selected", title=f"{job.src} -> {job.dst} (dry run)")
        for p, (n, k) in counts.items():
            table.add_row(str(p), str(n), str(k))
        table.add_row("all", str(sum(n for n, _ in counts.values())), str(sum(k for _, k in counts.values())))
        out.print(table)
        return
    stopping = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stopping.__setitem__("now", True))
    total = topic_replay.remaining(servers, job)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
                      TimeRemainingColumn(), console=err) as progress:
            task = progress.add_task(f"{src} -> {to}", total=total)
            read, copied = topic_replay.run(servers, job, lambda r, c: progress.update(task, completed=r),
                                            stop=lambda: stopping["now"], confluent=confluent)
    except RegistryUnavailable as exc:  # what was copied is committed; the rest waits for the registry
        raise _fail(f"{exc}; run the same command again to resume", code=1) from None
    state = "stopped; run the same command to resume" if stopping["now"] else "done"
    out.print(f"read {read}, copied {copied} ({state})")


# -- replay runs ----------------------------------------------------------------------------------------------


@replay_app.command("runs")
def replay_runs(app_spec: str = typer.Option(..., "--app", help="MODULE:ATTR of your pipeline.Inngest client"),
                function: str = typer.Option(..., "--function", help="function id (fn_id or app-fn_id)"),
                status: str = typer.Option("failed,cancelled", "--status", help="statuses, comma-separated"),
                from_: str | None = typer.Option(None, "--from", help="runs queued at or after: ISO-8601, -2h, ms"),
                to: str | None = typer.Option(None, "--to", help="runs queued before"),
                dry_run: bool = typer.Option(False, "--dry-run", help="list what would be replayed")) -> None:
    """New runs of the same events, linked to the originals (``replay_of``); each run is replayed once."""
    from .kafka.topics import partition_count
    from .sdk.app import Registry, load_app

    settings = Settings()
    servers = bootstrap(settings)
    try:
        statuses = frozenset(s.strip().lower() for s in status.split(",") if s.strip())
        selection = runs_replay.Selection(function, statuses, parse_time(from_) if from_ else None,
                                          parse_time(to) if to else None)
    except BadPosition as exc:
        raise _fail(str(exc)) from None
    admin = AdminClient(admin_config(servers))
    topics = {"runs": settings.topic(t.RUNS), "commands": settings.topic(t.RUN_COMMANDS),
              "index": settings.topic(t.CANCEL_INDEX)}
    parts = (partition_count(admin, topics["commands"]), partition_count(admin, topics["index"]))
    pairs = runs_replay.replay_runs(servers, Registry([load_app(app_spec)]), topics, selection, parts,
                                    dry_run=dry_run)
    table = Table("original run", "replay run", title=f"{len(pairs)} run(s){' (dry run)' if dry_run else ''}")
    for original, new in pairs:
        table.add_row(original, new)
    out.print(table)


# -- dead letters ---------------------------------------------------------------------------------------------


def _letters(reason: str | None = None, source: str | None = None) -> list[deadletters.DeadLetter]:
    settings = Settings()
    return deadletters.listing(bootstrap(settings), settings.topic(t.DEAD_LETTER), deadletters.matches(reason, source))


@dlq_app.command("list")
def dlq_list(reason: str | None = typer.Option(None, "--reason", help="substring of the reason"),
             source: str | None = typer.Option(None, "--source", help="source topic, unprefixed"),
             as_json: bool = typer.Option(False, "--json", help="one JSON object per line")) -> None:
    """One line per dead letter: its number and id, time, source, service and reason."""
    everything = _letters()
    keep = deadletters.matches(reason, source)
    rows = [(i, d) for i, d in enumerate(everything, 1) if keep(d)]
    if as_json:
        for i, d in rows:
            typer.echo(json.dumps({"n": i, "id": d.id, "time": d.timestamp, "source": d.where,
                                   "service": d.headers.get("dlq.service"), "reason": d.reason}))
        return
    table = Table("n", "id", "time", "source", "service", "reason", title=f"{len(rows)} dead letter(s)")
    for i, d in rows:
        table.add_row(str(i), d.id, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.timestamp / 1000)), d.where,
                      d.headers.get("dlq.service", ""), d.reason[:120])
    out.print(table)


@dlq_app.command("show")
def dlq_show(ref: str = typer.Argument(..., help="its number in `dlq list`, or its id p:o")) -> None:
    """One dead letter: headers, key, and the record decoded where possible, else as hex."""
    from .serde.display import decode_for_display

    letter = deadletters.find(_letters(), ref)
    if letter is None:
        raise _fail(f"no dead letter {ref}", 1)
    value = decode_for_display(Serde(), letter.value) if letter.value is not None else None
    shown: object = value
    if isinstance(value, str) and letter.value is not None and not letter.value.decode("utf-8", "ignore").isprintable():
        shown = {"hex": letter.value.hex()}
    typer.echo(json.dumps({"id": letter.id, "time": letter.timestamp, "headers": letter.headers,
                           "key": letter.key.decode("utf-8", "replace") if letter.key else None,
                           "value": shown}, indent=2, default=str))


@dlq_app.command("replay")
def dlq_replay(reason: str | None = typer.Option(None, "--reason", help="only these reasons (substring)"),
               source: str | None = typer.Option(None, "--source", help="only from this source topic"),
               ref: str | None = typer.Option(None, "--id", help="only this one (number or p:o)"),
               dry_run: bool = typer.Option(False, "--dry-run", help="list what would be re-published")) -> None:
    """Re-publish dead letters to their source topics after a fix, each record once."""
    settings = Settings()
    servers = bootstrap(settings)
    everything = _letters()
    if ref is not None:
        one = deadletters.find(everything, ref)
        if one is None:
            raise _fail(f"no dead letter {ref}", 1)
        chosen = [one]
    else:
        keep = deadletters.matches(reason, source)
        chosen = [d for d in everything if keep(d)]
    marker = settings.topic(t.DEAD_LETTER_REPLAYED)
    done = deadletters.replayed_ids(servers, marker)
    if dry_run:
        for d in chosen:
            typer.echo(f"{d.id} {d.where} {'(already replayed)' if d.id in done else ''}")
        return
    sent, skipped = deadletters.replay(servers, chosen, marker, done)
    out.print(f"replayed {sent}, skipped {skipped} (already replayed or without a source)")
