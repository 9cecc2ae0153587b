"""``pipeline``: the command line (typer).

broker   start | stop | status   the embedded Apache Kafka broker
topics   create | describe       topics from the specs in pipeline.kafka.topics
send     NAME --data JSON        produce one event
tail     TOPIC                   print decoded records as JSON lines
dev      --app MODULE:ATTR       broker + topics + every service + the HTTP API in one process
run      SERVICE --app ...       one service (matcher | run-owner | canceller | worker | api | source) for deployment
replay   group | topic | runs    move a service's offsets, re-publish a topic range, replay runs
dlq      list | show | replay     dead letters
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

import typer
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

from .config import Settings
from .gctune import tune_for_service
from .kafka import topics as t
from .kafka.client import admin_config, bootstrap, consumer_config, producer_config
from .kafka.messages import header_values
from .logs import setup_logging
from .ops.groups import current_name
from .serde import EVENT, Serde
from .serde.display import decode_for_display
from .serde.models import Event
from .supervise import run_dev, run_services, run_worker

if TYPE_CHECKING:
    from .sdk.app import Registry

app = typer.Typer(help="Kafka-native runtime for event-driven functions.", no_args_is_help=True)
topics_app = typer.Typer(help="Create and inspect the pipeline's topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
apps_app = typer.Typer(help="Apps served over HTTP with the official Inngest SDKs.", no_args_is_help=True)
app.add_typer(apps_app, name="apps")


@apps_app.command("sync")
def apps_sync(url: str = typer.Argument(..., help="the app's Inngest endpoint, e.g. http://127.0.0.1:3000/api/inngest"),
              timeout: float = typer.Option(30.0, "--timeout")) -> None:
    """Sync an app (a PUT to its URL, as the Inngest server does): it posts its functions to this runtime's
    /fn/register (set INNGEST_BASE_URL, or INNGEST_DEV, in the app to this API's address). Exit 1 if it fails."""
    import httpx

    from .apps.sync import sync_app

    try:
        result = sync_app(url, timeout=timeout, signed=bool(_settings().signing_key))
    except httpx.HTTPError as exc:
        err.print(f"[red]{url}: {exc}[/red]")
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"url": url, "status": result.status, "answer": result.body}))
    if not result.ok:
        raise typer.Exit(1)
err = Console(stderr=True)

SERVICES = ("matcher", "run-owner", "canceller", "worker", "api", "source")
NEEDS_APP = ("matcher", "run-owner", "worker", "source")


def _mount_broker() -> None:
    try:
        from .broker.cli import broker_app
    except ImportError:  # pragma: no cover - the broker module ships with the package
        return
    app.add_typer(broker_app, name="broker")


_mount_broker()


def _mount_ops() -> None:
    from .cli_ops import dlq_app, replay_app

    app.add_typer(replay_app, name="replay")
    app.add_typer(dlq_app, name="dlq")


_mount_ops()


def _settings() -> Settings:
    return Settings()


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(admin_config(bootstrap(settings)))


# -- topics ---------------------------------------------------------------------------------------------------


@topics_app.command("create")
def topics_create() -> None:
    """Create missing topics and report drift from the specs (idempotent)."""
    settings = _settings()
    reports = t.create_topics(_admin(settings), settings)
    table = Table("topic", "action", "drift")
    for r in reports:
        table.add_row(r.topic, r.action, "; ".join(r.drift))
    Console().print(table)
    if any(r.drift for r in reports):
        raise typer.Exit(3)


@topics_app.command("describe")
def topics_describe() -> None:
    """Show every spec'd topic: key, partitions, cleanup policy, retention, and drift."""
    settings = _settings()
    admin = _admin(settings)
    live = admin.list_topics(timeout=10).topics
    table = Table("topic", "key", "partitions", "cleanup", "retention.ms", "state")
    for spec in t.SPECS:
        name = settings.topic(spec.name)
        if name not in live:
            table.add_row(name, spec.key, "-", spec.cleanup_policy, str(spec.retention_ms), "missing")
            continue
        drift = t.drift(admin, settings, spec)
        table.add_row(name, spec.key, str(len(live[name].partitions)), spec.cleanup_policy, str(spec.retention_ms),
                      "drift: " + "; ".join(drift) if drift else "ok")
    Console().print(table)


# -- send / tail ----------------------------------------------------------------------------------------------


@app.command()
def send(name: str = typer.Argument(..., help="event name, e.g. contacts/import.requested"),
         data: str = typer.Option("{}", "--data", "-d", help="event data as JSON"),
         event_id: str | None = typer.Option(None, "--id", help="event id (default: a new ULID)"),
         user: str = typer.Option("{}", "--user", help="user as JSON"),
         topic: str = typer.Option(t.EVENTS, help="topic (unprefixed)")) -> None:
    """Produce one event to the events topic and print its id."""
    settings = _settings()
    try:
        event = Event(name=name, data=json.loads(data), user=json.loads(user), id=event_id or "").with_defaults()
    except json.JSONDecodeError as exc:
        err.print(f"[red]--data/--user is not valid JSON: {exc}[/red]")
        raise typer.Exit(2) from None
    except ValueError as exc:
        err.print(f"[red]invalid event: {exc}[/red]")
        raise typer.Exit(2) from None
    producer = Producer(producer_config(bootstrap(settings)))
    failures: list[str] = []
    producer.produce(settings.topic(topic), key=event.id, value=Serde().encode(EVENT, event.to_record()),
                     on_delivery=lambda e, m: failures.append(str(e)) if e else None)
    if producer.flush(30) or failures:
        err.print(f"[red]event not delivered: {failures or 'timed out'}[/red]")
        raise typer.Exit(1)
    typer.echo(event.id)


@app.command()
def tail(topic: str = typer.Argument(..., help="topic, unprefixed (events, runs, system-events, ...)"),
         from_beginning: bool = typer.Option(False, "--from-beginning", help="start at the oldest record"),
         max_records: int | None = typer.Option(None, "--max", help="stop after N records"),
         timeout: float | None = typer.Option(None, "--timeout", help="stop after S seconds without a record")) -> None:
    """Print decoded records, one JSON object per line."""
    settings = _settings()
    name = settings.topic(topic)
    consumer = Consumer(consumer_config(bootstrap(settings), None, read_committed=True))
    meta = consumer.list_topics(name, timeout=10).topics.get(name)
    if meta is None or meta.error is not None:
        err.print(f"[red]topic {name} does not exist[/red]")
        raise typer.Exit(2)
    start = -2 if from_beginning else -1
    consumer.assign([TopicPartition(name, p, start) for p in meta.partitions])
    serde = Serde()
    seen = 0
    last = time.monotonic()
    try:
        while max_records is None or seen < max_records:
            msg = consumer.poll(0.2)
            if msg is None:
                if timeout is not None and time.monotonic() - last > timeout:
                    break
                continue
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    err.print(f"[yellow]{error}[/yellow]")
                continue
            last = time.monotonic()
            key = msg.key()
            line = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                    "timestamp": msg.timestamp()[1], "key": key.decode("utf-8", "replace") if key else None,
                    "value": decode_for_display(serde, msg.value())}
            headers = header_values(msg)
            if headers:
                line["headers"] = {k: v.decode("utf-8", "replace") if v else None for k, v in headers}
            sys.stdout.write(json.dumps(line, default=str) + "\n")
            sys.stdout.flush()
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


# -- services -------------------------------------------------------------------------------------------------


def _ensure_dev_broker(settings: Settings) -> Settings:
    if settings.bootstrap_servers or os.environ.get("PIPELINE_BOOTSTRAP_SERVERS"):
        return settings
    from .broker.embedded import start as start_broker

    servers = start_broker()
    err.print(f"[green]embedded Kafka broker at {servers}[/green]")
    return settings.model_copy(update={"bootstrap_servers": servers})


@app.command()
def dev(app_spec: str | None = typer.Option(None, "--app", help="MODULE:ATTR of your pipeline.Inngest client"),
        urls: list[str] = typer.Option([], "-u", "--sdk-url",  # noqa: B008 - typer's way to declare a list option
                                       help="URL of an app served with an Inngest SDK, synced once the API is up"),
        port: int = typer.Option(8288, "--port", help="HTTP API port"),
        host: str = typer.Option("127.0.0.1", "--host")) -> None:
    """Everything for development in one command: broker, topics, the HTTP API and dev UI, and the matcher,
    run owner, canceller and a worker, each in a child process (its own core and interpreter lock).
    ``-u URL`` (repeatable, as ``inngest-cli dev -u``) syncs an app served over HTTP; ``--app`` and ``-u`` mix."""
    if not app_spec and not urls:
        typer.echo("pipeline dev: give --app MODULE:ATTR, -u URL of an Inngest SDK app, or both", err=True)
        raise typer.Exit(2)
    setup_logging(os.environ.get("PIPELINE_LOG_LEVEL", "INFO"))
    from .sdk.app import Registry

    # first: an app that does not load starts nothing (no broker, no child)
    registry = _load_dev_app(app_spec) if app_spec else Registry([])
    settings = _ensure_dev_broker(_settings())
    for key, what in (("event_key", "PIPELINE_EVENT_KEY"), ("signing_key", "PIPELINE_SIGNING_KEY")):
        if not getattr(settings, key):
            logging.getLogger("pipeline.dev").warning(f"{what} is not set: the API accepts requests without it")
    for report in t.create_topics(_admin(settings), settings):
        if report.drift:
            err.print(f"[yellow]topic {report.topic} drifts from its spec: {'; '.join(report.drift)}[/yellow]")
    tune_for_service()
    code = run_dev(settings, app_spec, host=host, port=port, registry=registry, sync_urls=urls)
    if code:
        raise typer.Exit(code)


EXIT_BAD_APP = 2


def _load_dev_app(app_spec: str) -> Registry:
    """The app ``--app`` names, loaded once, here. If it does not load: one line on stderr (the spec, the
    exception's type and message; the traceback only with PIPELINE_LOG_LEVEL=DEBUG) and exit 2. The children
    load it again, and only an app that loads here is given to them."""
    from .sdk.app import Registry, load_app

    try:
        return Registry([load_app(app_spec)])
    except (Exception, SystemExit) as exc:  # whatever the app's import raises, said once
        logging.getLogger("pipeline.dev").debug("--app %s did not load", app_spec, exc_info=exc)
        message = " ".join(str(exc).split()) or "(no message)"
        typer.echo(f"pipeline dev: cannot load --app {app_spec}: {type(exc).__name__}: {message}", err=True)
        raise typer.Exit(EXIT_BAD_APP) from None


@app.command("run")
def run_service(service: str = typer.Argument(..., help="matcher | run-owner | canceller | worker | api | source"),
                app_spec: str | None = typer.Option(None, "--app",
                                                    help="MODULE:ATTR (matcher, run-owner, worker, source)"),
                no_app: bool = typer.Option(False, "--no-app", help="serve only apps synced over HTTP"),
                port: int = typer.Option(8288, "--port"), host: str = typer.Option("0.0.0.0", "--host")) -> None:
    """Run one service; scale by running more instances (same group, distinct PIPELINE_INSTANCE_ID)."""
    service, deprecated = current_name(service)
    if deprecated:
        err.print(f"[yellow]{deprecated}[/yellow]")
    if service not in SERVICES:
        err.print(f"[red]unknown service {service!r}; choose one of {', '.join(SERVICES)}[/red]")
        raise typer.Exit(2)
    if service in NEEDS_APP and not app_spec and not no_app:
        err.print(f"[red]{service} needs --app MODULE:ATTR (or --no-app: only apps synced over HTTP)[/red]")
        raise typer.Exit(2)
    setup_logging(os.environ.get("PIPELINE_LOG_LEVEL", "INFO"))
    tune_for_service()
    if service == "worker":
        code = run_worker(_settings(), app_spec or "")
    else:
        code = run_services(_settings(), app_spec, (service,), host=host, port=port)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
