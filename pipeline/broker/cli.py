"""``pipeline broker start|stop|status``: manage the embedded Kafka broker from a shell.

stdout carries only the result (the bootstrap address as the last line of ``start``), so
scripts can do ``BOOTSTRAP=$(pipeline broker start)``; progress and errors go to stderr.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import embedded
from .errors import BrokerError

broker_app = typer.Typer(
    help="Run a real Apache Kafka broker (KRaft) locally for development and tests; no Docker needed.",
    no_args_is_help=True,
)
_err = Console(stderr=True, log_path=False)
_out = Console()

_NAME = typer.Option(embedded.DEFAULT_NAME, "--name", help="Cluster name: its own data dir and ports.")


def _fail(exc: BrokerError) -> typer.Exit:
    """Print a BrokerError without rich markup (messages contain log lines with brackets)."""
    _err.print(Text("error: ", style="bold red") + Text(str(exc)), soft_wrap=True)
    return typer.Exit(1)


@broker_app.command()
def start(
    nodes: int | None = typer.Option(
        None, "--nodes", "-n", min=1, max=9, help="Nodes (broker+controller each); 3 = replicated. Default 1."),
    name: str = _NAME,
    port: int | None = typer.Option(
        None, "--port", "-p", min=0, max=65535,
        help=f"First client port (node i: port+2i, controller port+2i+1). Default {embedded.DEFAULT_PORT}; "
             "0 = pick free ports."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait until the broker is ready."),
) -> None:
    """Start (or reuse) the embedded broker and print its bootstrap address."""
    ext = embedded.external_bootstrap()
    try:
        if ext:
            _err.print(f"[yellow]{embedded.ENV_BOOTSTRAP} is set:[/yellow] using the existing cluster at "
                       f"[bold]{ext}[/bold], not starting an embedded broker.")
            bootstrap = embedded.use_external(ext, timeout=min(timeout, 15.0))
        else:
            with _err.status(f"Starting Kafka {embedded.KAFKA_VERSION}…") as spinner:
                def progress(message: str) -> None:
                    spinner.update(message)
                    _err.log(Text(message))

                bootstrap = embedded.start(nodes, name, port, timeout=timeout, use_env=False, progress=progress)
    except BrokerError as exc:
        raise _fail(exc) from None
    typer.echo(bootstrap)


@broker_app.command()
def stop(
    name: str = _NAME,
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for a clean shutdown before SIGKILL."),
) -> None:
    """Stop the embedded broker (SIGTERM, then SIGKILL after the timeout). Data is kept."""
    if embedded.external_bootstrap():
        _err.print(f"[yellow]{embedded.ENV_BOOTSTRAP} is set:[/yellow] the external cluster is not managed here.")
    try:
        stopped = embedded.stop(name, timeout=timeout, progress=lambda m: _err.log(Text(m)))
    except BrokerError as exc:
        raise _fail(exc) from None
    _err.print(f"cluster '{name}' stopped" if stopped else f"cluster '{name}' was not running")


@broker_app.command()
def status(name: str = _NAME) -> None:
    """Show nodes, ports, pids and logs; exit code 0 if the broker answers, 1 otherwise."""
    try:
        st = embedded.status(name)
    except BrokerError as exc:
        raise _fail(exc) from None
    if st.external:
        _err.print(f"[yellow]{embedded.ENV_BOOTSTRAP} is set:[/yellow] clients use {st.external}.")
    if not st.exists:
        _out.print(f"no embedded cluster named '{name}' (start it with `pipeline broker start --name {name}`)")
        raise typer.Exit(1)
    table = Table(title=f"cluster '{name}'  {st.bootstrap}  ({'answering' if st.answering else 'not answering'})")
    for column in ("node", "state", "pid", "client port", "controller port"):
        table.add_column(column)
    table.add_column("log", overflow="fold")
    for node in st.nodes:
        table.add_row(str(node.index), "[green]running[/green]" if node.alive else "[red]stopped[/red]",
                      str(node.pid or "-"), str(node.broker_port), str(node.controller_port), str(node.log))
    _out.print(table)
    if not st.answering:
        raise typer.Exit(1)
