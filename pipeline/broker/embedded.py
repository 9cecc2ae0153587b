"""An embedded, real Apache Kafka broker (KRaft, combined broker+controller) for dev and tests.

Why a real broker: the runtime depends on Kafka transactions, compaction and consumer-group
semantics that fakes get subtly wrong. Why not Docker: it is not available everywhere
(CI sandboxes, locked-down laptops), while a JVM and Maven Central usually are.

Layout under the cache root (``$PIPELINE_HOME`` or ``~/.cache/pipeline``)::

    kafka-4.3.1/libs/                 jars, fetched once with Maven
    clusters/<name>/cluster.json      cluster id, node count and ports (fixed at creation)
    clusters/<name>/node-<i>/         data/, server.properties, log4j2.properties, broker.log, pid

A cluster keeps its ports and data across ``stop``/``start``; ``start`` on a running cluster
just checks it is ready and returns the same bootstrap string. When
``PIPELINE_BOOTSTRAP_SERVERS`` is set, :func:`start` uses that cluster instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import _probe
from ._config import NodeSpec, log4j2_properties, replication, server_properties
from ._fetch import (
    KAFKA_VERSION,
    Progress,
    _quiet,
    check_java,
    classpath,
    ensure_kafka,
    find_java,
    java_major,
    pipeline_home,
)
from ._util import (
    LOOPBACK,
    file_lock,
    free_ports,
    pid_alive,
    port_free,
    reap,
    remember_child,
    signal_pid,
    tail,
    wait_gone,
)
from .errors import BrokerError

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_PORT",
    "ENV_BOOTSTRAP",
    "KAFKA_VERSION",
    "BrokerError",
    "ClusterStatus",
    "NodeStatus",
    "check_java",
    "cluster_dir",
    "destroy",
    "ensure_kafka",
    "external_bootstrap",
    "find_java",
    "java_major",
    "kill_node",
    "list_clusters",
    "pipeline_home",
    "reap_orphans",
    "replication",
    "start",
    "start_node",
    "status",
    "stop",
    "use_external",
]

DEFAULT_NAME = "dev"
#: First broker port of a cluster started without ``port``; node i listens on
#: ``DEFAULT_PORT + 2*i`` (client) and ``DEFAULT_PORT + 2*i + 1`` (controller).
DEFAULT_PORT = 19092
ENV_BOOTSTRAP = "PIPELINE_BOOTSTRAP_SERVERS"
ENV_JVM_OPTS = "PIPELINE_BROKER_JVM_OPTS"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SPEC_FILE = "cluster.json"
_LOG_ROTATE_BYTES = 20 * 1024 * 1024


# --------------------------------------------------------------------------- data types


@dataclass
class ClusterSpec:
    """What is fixed when a cluster is created: id, nodes and their ports.

    Persisted in ``cluster.json`` so a restart binds the same ports (the KRaft quorum
    remembers controller endpoints) and a free-port cluster keeps its address.
    """

    name: str
    cluster_id: str
    nodes: list[NodeSpec]
    kafka_version: str = KAFKA_VERSION
    owner_pid: int | None = None  # set for throwaway clusters (pytest): reaped when this pid is gone

    @property
    def bootstrap(self) -> str:
        """Comma-separated client addresses of every node."""
        return ",".join(f"{LOOPBACK}:{n.broker_port}" for n in self.nodes)

    def to_json(self) -> str:
        """Serialise for ``cluster.json``."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterSpec:
        """Parse ``cluster.json``."""
        raw = json.loads(text)
        raw["nodes"] = [NodeSpec(**n) for n in raw["nodes"]]
        return cls(**raw)


@dataclass(frozen=True)
class NodeStatus:
    """Runtime state of one node."""

    index: int
    pid: int | None
    alive: bool
    broker_port: int
    controller_port: int
    log: Path


@dataclass(frozen=True)
class ClusterStatus:
    """Runtime state of a named embedded cluster (or of the external one)."""

    name: str
    exists: bool
    bootstrap: str | None = None
    nodes: tuple[NodeStatus, ...] = field(default_factory=tuple)
    answering: bool | None = None  # None: not probed
    external: str | None = None  # PIPELINE_BOOTSTRAP_SERVERS, if set
    directory: Path | None = None

    @property
    def running(self) -> bool:
        """True if at least one node process is alive."""
        return any(n.alive for n in self.nodes)


# --------------------------------------------------------------------------- paths & specs


def _check_name(name: str) -> None:
    """Cluster names become directory names: keep them simple and path-safe."""
    if not _NAME_RE.match(name):
        raise BrokerError(f"invalid cluster name {name!r}: use letters, digits, '.', '_' or '-' (max 64)")


def cluster_dir(name: str = DEFAULT_NAME, home: Path | None = None) -> Path:
    """The directory holding cluster ``name``'s config, data and logs."""
    _check_name(name)
    return (home or pipeline_home()) / "clusters" / name


def _node_dir(cdir: Path, index: int) -> Path:
    return cdir / f"node-{index}"


def _props(cdir: Path, index: int) -> Path:
    return _node_dir(cdir, index) / "server.properties"


def _log(cdir: Path, index: int) -> Path:
    return _node_dir(cdir, index) / "broker.log"


def _load_spec(cdir: Path) -> ClusterSpec | None:
    path = cdir / _SPEC_FILE
    if not path.is_file():
        return None
    try:
        return ClusterSpec.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise BrokerError(f"{path} is unreadable ({exc}); delete {cdir} to recreate the cluster") from exc


def _save_spec(cdir: Path, spec: ClusterSpec) -> None:
    cdir.mkdir(parents=True, exist_ok=True)
    tmp = cdir / f"{_SPEC_FILE}.tmp"
    tmp.write_text(spec.to_json())
    tmp.replace(cdir / _SPEC_FILE)


def list_clusters(home: Path | None = None) -> list[str]:
    """Names of the embedded clusters that exist in the cache."""
    root = (home or pipeline_home()) / "clusters"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / _SPEC_FILE).is_file())


def _new_cluster_id() -> str:
    """A random KRaft cluster id (base64url of 16 bytes); never starting with '-' (CLI flag)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


# --------------------------------------------------------------------------- processes


def _pid_of(cdir: Path, index: int) -> int | None:
    try:
        return int((_node_dir(cdir, index) / "pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _node_alive(cdir: Path, index: int) -> bool:
    """True if node ``index``'s recorded pid runs *our* broker (its server.properties)."""
    pid = _pid_of(cdir, index)
    return pid is not None and pid_alive(pid, str(_props(cdir, index)))


def _jvm_opts(nodes: int) -> list[str]:
    """Small heap, a simple GC and the quick JIT only: several brokers and the app share a 2-core box.

    ``-XX:TieredStopAtLevel=1``: a fresh broker's C2 compiler threads took ~1.4 of its 3 CPU seconds
    during a 2,000-run burst (bench/steps.py, per-thread CPU from /proc), starving the services next to
    it; with C1 only the broker used 2.1-2.4 s and the bench's runs finished sooner (docs/benchmarks.md).
    A long-lived production broker is not this one: it runs with its own JVM settings.

    ``PIPELINE_BROKER_JVM_OPTS`` is appended last, so it can override anything (e.g. -Xmx1g, or
    -XX:TieredStopAtLevel=4 for the full JIT).
    """
    opts = ["-Xms256m" if nodes == 1 else "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8"]
    return opts + shlex.split(os.environ.get(ENV_JVM_OPTS, ""))


def _rotate_log(log: Path) -> None:
    """Keep one previous log once broker.log grows big; a dev broker runs for weeks."""
    if log.is_file() and log.stat().st_size > _LOG_ROTATE_BYTES:
        log.replace(log.with_name(log.name + ".1"))


def _prepare_node(cdir: Path, spec: ClusterSpec, node: NodeSpec) -> None:
    """Write the node's config files (regenerated each start so upgrades apply)."""
    ndir = _node_dir(cdir, node.index)
    (ndir / "data").mkdir(parents=True, exist_ok=True)
    _props(cdir, node.index).write_text(server_properties(node, spec.nodes, ndir / "data"))
    (ndir / "log4j2.properties").write_text(log4j2_properties())


def _format_cmd(java: str, home: Path, cdir: Path, spec: ClusterSpec, node: NodeSpec) -> list[str]:
    """The StorageTool command formatting ``node``.

    One node: ``--standalone`` (dynamic single-voter quorum). Several nodes: the static
    ``controller.quorum.voters`` in server.properties defines the quorum, so no flag.
    """
    cmd = [java, "-Xmx256m", "-XX:+UseSerialGC", "-cp", classpath(home),
           "-Dlog4j2.level=WARN",  # its own prints only, not the INFO dump of every config value
           "kafka.tools.StorageTool", "format", "-t", spec.cluster_id, "-c", str(_props(cdir, node.index))]
    return [*cmd, "--standalone"] if len(spec.nodes) == 1 else cmd


def _format_nodes(java: str, home: Path, cdir: Path, spec: ClusterSpec, nodes: list[NodeSpec]) -> None:
    """Format the KRaft storage of ``nodes`` once, in parallel (a JVM start each, ~1 s).

    ``meta.properties`` marks a finished format; a data dir without it never held data,
    so it is wiped and formatted again.
    """
    todo = [n for n in nodes if not (_node_dir(cdir, n.index) / "data" / "meta.properties").is_file()]
    procs: list[tuple[NodeSpec, subprocess.Popen[str]]] = []
    for node in todo:
        data = _node_dir(cdir, node.index) / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        try:
            procs.append((node, subprocess.Popen(_format_cmd(java, home, cdir, spec, node), stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True, cwd=data.parent)))
        except OSError as exc:
            raise BrokerError(f"could not run the Kafka storage formatter: {exc}") from exc
    failures = []
    for node, proc in procs:
        try:
            output, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        with open(_log(cdir, node.index), "a") as log:
            log.write(output)
        if proc.returncode != 0:
            lines = "\n".join(output.strip().splitlines()[-25:])
            failures.append(f"node {node.index} (exit {proc.returncode}):\n{lines}")
    if failures:
        raise BrokerError(f"formatting the KRaft storage of cluster '{spec.name}' failed for " + "\n".join(failures))


def _launch(java: str, home: Path, cdir: Path, spec: ClusterSpec, node: NodeSpec) -> None:
    """Start one node detached (own session, output into broker.log) and record its pid."""
    ndir = _node_dir(cdir, node.index)
    log = _log(cdir, node.index)
    _rotate_log(log)
    cmd = [java, *_jvm_opts(len(spec.nodes)), "-cp", classpath(home),
           f"-Dlog4j2.configurationFile={ndir / 'log4j2.properties'}", f"-Dkafka.logs.dir={ndir}",
           "kafka.Kafka", str(_props(cdir, node.index))]
    with open(log, "ab") as out:
        out.write(f"\n===== pipeline: starting Kafka {KAFKA_VERSION} node {node.index} at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=ndir, start_new_session=True, close_fds=True)
    remember_child(proc)
    (ndir / "pid").write_text(f"{proc.pid}\n")


# --------------------------------------------------------------------------- ports


def _port_owner(port: int, home: Path) -> str:
    """Who holds ``port``: one of our running clusters, or 'another program'."""
    for other in list_clusters(home):
        cdir = cluster_dir(other, home)
        spec = _load_spec(cdir)
        for node in spec.nodes if spec else []:
            if port in (node.broker_port, node.controller_port) and _node_alive(cdir, node.index):
                pid = _pid_of(cdir, node.index)
                return f"the running pipeline broker cluster '{other}' (node {node.index}, pid {pid})"
    return "another program (not a pipeline broker)"


def _check_ports_free(nodes: list[NodeSpec], home: Path) -> None:
    """Fail early, naming the port and its holder, instead of letting the JVM die on bind."""
    for node in nodes:
        for port in (node.broker_port, node.controller_port):
            if not port_free(port):
                raise BrokerError(
                    f"port {port} on {LOOPBACK} is already in use by {_port_owner(port, home)}. "
                    "Stop it, choose other ports with --port (0 = pick free ports), "
                    f"or set {ENV_BOOTSTRAP} to use an existing Kafka cluster."
                )


def _choose_nodes(count: int, port: int | None, home: Path) -> list[NodeSpec]:
    """Ports for a new cluster: ``port=0`` picks free ones; else consecutive from ``port``."""
    if port == 0:
        ports = free_ports(2 * count)
        return [NodeSpec(i, ports[2 * i], ports[2 * i + 1]) for i in range(count)]
    base = DEFAULT_PORT if port is None else port
    if not 1 <= base <= 65535 - 2 * count:
        raise BrokerError(f"port {base} is out of range")
    nodes = [NodeSpec(i, base + 2 * i, base + 2 * i + 1) for i in range(count)]
    _check_ports_free(nodes, home)
    return nodes


def _check_compatible(spec: ClusterSpec, cdir: Path, nodes: int | None, port: int | None) -> None:
    """An existing cluster keeps its shape: refuse a different node count or port."""
    if nodes is not None and nodes != len(spec.nodes):
        raise BrokerError(
            f"cluster '{spec.name}' already exists with {len(spec.nodes)} node(s) in {cdir}; start it without "
            f"--nodes, use another --name, or delete that directory to recreate it with {nodes}"
        )
    if port not in (None, 0) and port != spec.nodes[0].broker_port:
        raise BrokerError(
            f"cluster '{spec.name}' already exists on port {spec.nodes[0].broker_port} (its quorum remembers its "
            f"ports); start it without --port, use another --name, or delete {cdir} to recreate it"
        )


# --------------------------------------------------------------------------- readiness


def _alive_checker(cdir: Path, spec: ClusterSpec, indices: list[int]) -> Callable[[], None]:
    """A callback raising BrokerError (with the log tail) if one of ``indices`` died."""

    def check() -> None:
        for index in indices:
            if not _node_alive(cdir, index):
                pid = _pid_of(cdir, index)
                code = reap(pid) if pid else None
                how = f" with exit code {code}" if code is not None else ""
                raise BrokerError(
                    f"Kafka node {index} of cluster '{spec.name}' exited{how} while starting. "
                    f"Last lines of {_log(cdir, index)}:\n{tail(_log(cdir, index))}"
                )

    return check


def _timeout_error(cdir: Path, spec: ClusterSpec, what: str, timeout: float) -> BrokerError:
    return BrokerError(
        f"{what} (waited {timeout:.0f}s for cluster '{spec.name}'). "
        f"Last lines of {_log(cdir, 0)}:\n{tail(_log(cdir, 0))}"
    )


def _wait_ready(cdir: Path, spec: ClusterSpec, launched: list[int], deadline: float, timeout: float,
                progress: Progress) -> None:
    """Wait until launched nodes answer, all nodes are registered and transactions work."""
    check = _alive_checker(cdir, spec, [n.index for n in spec.nodes])
    try:
        for index in launched:
            node = spec.nodes[index]
            progress(f"Waiting for node {index} on {LOOPBACK}:{node.broker_port}")
            _probe.wait_metadata(f"{LOOPBACK}:{node.broker_port}", 1, deadline, check)
        progress(f"Waiting for {len(spec.nodes)} broker(s) to register")
        _probe.wait_metadata(spec.bootstrap, len(spec.nodes), deadline, check)
        progress("Waiting for the transaction coordinator")
        _probe.wait_transactions(spec.bootstrap, deadline, check)
    except TimeoutError as exc:
        raise _timeout_error(cdir, spec, str(exc), timeout) from exc
    _probe.warm_group_coordinator(spec.bootstrap, min(10.0, max(1.0, deadline - time.monotonic())))


# --------------------------------------------------------------------------- public API


def external_bootstrap() -> str | None:
    """``PIPELINE_BOOTSTRAP_SERVERS`` if set (non-empty): then no embedded broker is used."""
    value = os.environ.get(ENV_BOOTSTRAP, "").strip()
    return value or None


def use_external(bootstrap: str, timeout: float = 15.0, progress: Progress = _quiet) -> str:
    """Check an existing cluster answers metadata; returns its bootstrap string."""
    progress(f"Using the existing Kafka cluster at {bootstrap} ({ENV_BOOTSTRAP})")
    if not _probe.answers(bootstrap, timeout):
        raise BrokerError(
            f"{ENV_BOOTSTRAP}={bootstrap} does not answer within {timeout:.0f}s; check the address, "
            "or unset it to use the embedded broker"
        )
    return bootstrap


def start(nodes: int | None = None, name: str = DEFAULT_NAME, port: int | None = None, *,
          timeout: float = 120.0, use_env: bool = True, ephemeral: bool = False,
          home: Path | None = None, progress: Progress = _quiet) -> str:
    """Start (or reuse) embedded cluster ``name`` and return its bootstrap string.

    ``nodes``: 1 (default for a new cluster) or 3 for a replicated quorum; an existing
    cluster keeps its node count. ``port``: first broker port (default 19092), ``0`` picks
    free ports; an existing cluster keeps its ports. ``use_env``: honour
    ``PIPELINE_BOOTSTRAP_SERVERS`` (tests pass False to always get an embedded broker).
    ``ephemeral``: record this process as owner so :func:`reap_orphans` deletes the cluster
    once this process is gone. Returns once metadata answers and ``init_transactions()`` works.
    """
    if use_env and (ext := external_bootstrap()):
        return use_external(ext, progress=progress)
    if nodes is not None and nodes < 1:
        raise BrokerError("--nodes must be at least 1")
    home = home or pipeline_home()
    cdir = cluster_dir(name, home)
    try:
        with file_lock(cdir / ".lock"):
            return _start_locked(nodes, name, port, timeout, ephemeral, home, cdir, progress)
    except BrokerError:
        if not (cdir / _SPEC_FILE).exists():  # failed before creating anything worth keeping
            shutil.rmtree(cdir, ignore_errors=True)
        raise


def _start_locked(nodes: int | None, name: str, port: int | None, timeout: float, ephemeral: bool,
                  home: Path, cdir: Path, progress: Progress) -> str:
    """Body of :func:`start`, run while holding the cluster's lock."""
    began = time.monotonic()
    deadline = began + timeout
    spec = _load_spec(cdir)
    if spec is not None:
        _check_compatible(spec, cdir, nodes, port)
        if all(_node_alive(cdir, n.index) for n in spec.nodes):
            progress(f"Cluster '{name}' is already running; checking it is ready")
            _wait_ready(cdir, spec, [], deadline, timeout, progress)
            return spec.bootstrap
    java = check_java()
    ensure_kafka(home, progress)
    if spec is None:
        spec = ClusterSpec(name, _new_cluster_id(), _choose_nodes(nodes or 1, port, home),
                           owner_pid=os.getpid() if ephemeral else None)
        _save_spec(cdir, spec)
    dead = [n for n in spec.nodes if not _node_alive(cdir, n.index)]
    _check_ports_free(dead, home)
    for node in dead:
        _prepare_node(cdir, spec, node)
    _format_nodes(java, home, cdir, spec, dead)
    progress(f"Starting Kafka {KAFKA_VERSION} cluster '{name}' ({len(spec.nodes)} node(s)) in {cdir}")
    for node in dead:
        _launch(java, home, cdir, spec, node)
    _wait_ready(cdir, spec, [n.index for n in dead], deadline, timeout, progress)
    progress(f"Kafka ready at {spec.bootstrap} in {time.monotonic() - began:.1f}s")
    return spec.bootstrap


def _require_spec(name: str, home: Path | None) -> tuple[Path, ClusterSpec]:
    cdir = cluster_dir(name, home)
    spec = _load_spec(cdir)
    if spec is None:
        raise BrokerError(f"no embedded cluster named '{name}' (looked in {cdir})")
    return cdir, spec


def _running_pids(cdir: Path, spec: ClusterSpec) -> dict[int, int]:
    """{node index: pid} of the nodes whose process is alive."""
    pids = {n.index: _pid_of(cdir, n.index) for n in spec.nodes if _node_alive(cdir, n.index)}
    return {index: pid for index, pid in pids.items() if pid is not None}


def stop(name: str = DEFAULT_NAME, *, timeout: float = 30.0, home: Path | None = None,
         progress: Progress = _quiet) -> bool:
    """Stop cluster ``name``: SIGTERM every node (clean shutdown), SIGKILL after ``timeout``.

    Data is kept. Returns True if any node was running.
    """
    cdir = cluster_dir(name, home)
    spec = _load_spec(cdir)
    if spec is None:
        return False
    with file_lock(cdir / ".lock"):
        running = _running_pids(cdir, spec)
        if running:
            progress(f"Stopping cluster '{name}' (pids {', '.join(str(p) for p in running.values())})")
        for pid in running.values():
            signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for index, pid in running.items():
            token = str(_props(cdir, index))
            if not wait_gone(pid, token, max(0.0, deadline - time.monotonic())):
                progress(f"Node {index} did not stop within {timeout:.0f}s; killing it")
                signal_pid(pid, signal.SIGKILL)
                wait_gone(pid, token, 10.0)
        for node in spec.nodes:
            (_node_dir(cdir, node.index) / "pid").unlink(missing_ok=True)
    return bool(running)


def kill_node(name: str, index: int, *, home: Path | None = None) -> bool:
    """SIGKILL node ``index`` (a crash, no clean shutdown) for failure tests; True if it ran."""
    cdir, spec = _require_spec(name, home)
    if not 0 <= index < len(spec.nodes):
        raise BrokerError(f"cluster '{name}' has nodes 0..{len(spec.nodes) - 1}, not {index}")
    pid = _pid_of(cdir, index)
    if pid is None or not _node_alive(cdir, index):
        return False
    signal_pid(pid, signal.SIGKILL)
    wait_gone(pid, str(_props(cdir, index)), 10.0)
    (_node_dir(cdir, index) / "pid").unlink(missing_ok=True)
    return True


def pause_node(name: str, index: int, paused: bool = True, *, home: Path | None = None) -> bool:
    """SIGSTOP (or SIGCONT) node ``index``: a broker that hangs with its sockets open, the fault that makes
    client calls block instead of fail. For stall tests; True if the node runs."""
    cdir, _ = _require_spec(name, home)
    pid = _pid_of(cdir, index)
    if pid is None or not _node_alive(cdir, index):
        return False
    signal_pid(pid, signal.SIGSTOP if paused else signal.SIGCONT)
    return True


def start_node(name: str, index: int, *, timeout: float = 90.0, home: Path | None = None,
               progress: Progress = _quiet) -> str:
    """(Re)start one node of an existing cluster and wait until it serves; returns the bootstrap."""
    home = home or pipeline_home()
    cdir, spec = _require_spec(name, home)
    if not 0 <= index < len(spec.nodes):
        raise BrokerError(f"cluster '{name}' has nodes 0..{len(spec.nodes) - 1}, not {index}")
    node = spec.nodes[index]
    deadline = time.monotonic() + timeout
    with file_lock(cdir / ".lock"):
        if _node_alive(cdir, index):
            return spec.bootstrap
        java = check_java()
        ensure_kafka(home, progress)
        _check_ports_free([node], home)
        _prepare_node(cdir, spec, node)
        _format_nodes(java, home, cdir, spec, [node])
        _launch(java, home, cdir, spec, node)
        check = _alive_checker(cdir, spec, [index])
        try:
            _probe.wait_metadata(f"{LOOPBACK}:{node.broker_port}", 1, deadline, check)
        except TimeoutError as exc:
            raise BrokerError(f"node {index} of '{name}' did not answer within {timeout:.0f}s. Last lines of "
                              f"{_log(cdir, index)}:\n{tail(_log(cdir, index))}") from exc
    return spec.bootstrap


def status(name: str = DEFAULT_NAME, *, home: Path | None = None, probe: bool = True) -> ClusterStatus:
    """State of cluster ``name``: node pids/ports/logs and (if ``probe``) whether it answers."""
    cdir = cluster_dir(name, home)
    spec = _load_spec(cdir)
    ext = external_bootstrap()
    if spec is None:
        return ClusterStatus(name=name, exists=False, external=ext, directory=cdir)
    nodes = tuple(
        NodeStatus(n.index, _pid_of(cdir, n.index), _node_alive(cdir, n.index), n.broker_port, n.controller_port,
                   _log(cdir, n.index))
        for n in spec.nodes
    )
    answering: bool | None = None
    if probe:
        answering = any(n.alive for n in nodes) and _probe.answers(spec.bootstrap, 3.0)
    return ClusterStatus(name, True, spec.bootstrap, nodes, answering, ext, cdir)


def destroy(name: str, *, home: Path | None = None) -> None:
    """Stop cluster ``name`` and delete its directory (config, data, logs)."""
    cdir = cluster_dir(name, home)
    stop(name, timeout=15.0, home=home)
    shutil.rmtree(cdir, ignore_errors=True)


def _owner_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap_orphans(home: Path | None = None) -> list[str]:
    """Destroy ephemeral clusters whose owner process died (e.g. a killed pytest run)."""
    reaped = []
    for name in list_clusters(home):
        try:
            spec = _load_spec(cluster_dir(name, home))
        except BrokerError:
            continue
        if spec and spec.owner_pid is not None and spec.owner_pid != os.getpid() and _owner_gone(spec.owner_pid):
            destroy(name, home=home)
            reaped.append(name)
    return reaped

