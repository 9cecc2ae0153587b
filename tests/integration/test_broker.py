"""Integration tests of the embedded Kafka broker and the pytest plugin's fixtures.

They run against a real broker: round trips and transactions through ``kafka_bootstrap``,
and lifecycle properties (data survives restart, reuse, port conflicts, a 3-node quorum
losing a node) against separately started embedded clusters on free ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from pipeline.broker import _fetch, embedded
from pipeline.broker.errors import BrokerError
from pipeline.testing.helpers import await_records, create_topic, produce, unique_name


def _plugins() -> list[str]:
    """Load the plugin here unless its entry point already does (double registration is an error)."""
    installed = any(ep.value == "pipeline.testing.plugin" for ep in entry_points(group="pytest11"))
    autoload = not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    return [] if installed and autoload else ["pipeline.testing.plugin"]


pytest_plugins = _plugins()
pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]

needs_java = pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
                                reason="the embedded broker needs Java 17+")


# --------------------------------------------------------------------------- through the fixture


def test_round_trip(kafka_bootstrap: str, unique_topic: str) -> None:
    create_topic(kafka_bootstrap, unique_topic, partitions=3)
    produce(kafka_bootstrap, unique_topic, [b"hello"], key=b"k1")

    [msg] = await_records(kafka_bootstrap, unique_topic, 1, timeout=30)

    assert (msg.key(), msg.value()) == (b"k1", b"hello")


def test_transactions_commit_visible_abort_invisible(kafka_bootstrap: str, unique_topic: str) -> None:
    create_topic(kafka_bootstrap, unique_topic)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique_name("txn")})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(unique_topic, value=b"aborted")
    producer.flush(30)  # on the broker's log before the abort (abort purges unsent records)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(unique_topic, value=b"committed")
    producer.commit_transaction(30)

    committed = await_records(kafka_bootstrap, unique_topic, 1, decode=bytes)
    everything = await_records(kafka_bootstrap, unique_topic, 2, decode=bytes, isolation="read_uncommitted")

    # read_committed skips the aborted record; read_uncommitted shows both in offset order.
    assert committed == [b"committed"]
    assert everything == [b"aborted", b"committed"]
    with pytest.raises(AssertionError, match="got 1"):
        await_records(kafka_bootstrap, unique_topic, 2, timeout=2, decode=bytes)


def test_await_records_reports_what_it_saw(kafka_bootstrap: str, unique_topic: str) -> None:
    create_topic(kafka_bootstrap, unique_topic)
    produce(kafka_bootstrap, unique_topic, [b"a", b"b"])

    with pytest.raises(AssertionError) as failure:
        await_records(kafka_bootstrap, unique_topic, 1, timeout=2, predicate=lambda m: m.value() == b"zzz")

    assert "saw 2 record(s)" in str(failure.value) and "b'b'" in str(failure.value)


# --------------------------------------------------------------------------- separate embedded clusters


@pytest.fixture
def cluster_name() -> Iterator[str]:
    """A unique embedded cluster name; the cluster is destroyed after the test."""
    name = unique_name("it-broker")
    yield name
    embedded.destroy(name)


@needs_java
def test_data_survives_restart_and_start_reuses_running_broker(cluster_name: str) -> None:
    bootstrap = embedded.start(1, cluster_name, port=0, use_env=False, ephemeral=True)
    topic = create_topic(bootstrap, unique_name("durable"))
    produce(bootstrap, topic, [b"kept"])
    pid = embedded.status(cluster_name).nodes[0].pid

    assert embedded.start(name=cluster_name, use_env=False) == bootstrap
    assert embedded.status(cluster_name).nodes[0].pid == pid  # reused, not restarted

    assert embedded.stop(cluster_name) is True
    stopped = embedded.status(cluster_name)
    assert not stopped.running and stopped.answering is False

    assert embedded.start(name=cluster_name, port=0, use_env=False) == bootstrap  # same ports
    assert embedded.status(cluster_name).nodes[0].pid != pid
    assert await_records(bootstrap, topic, 1, decode=bytes) == [b"kept"]


@needs_java
def test_port_taken_by_another_program_is_a_clear_error(cluster_name: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        with pytest.raises(BrokerError, match=rf"port {port}\b.*another program"):
            embedded.start(1, cluster_name, port=port, use_env=False)

    assert not embedded.cluster_dir(cluster_name).exists()  # nothing half-created is left behind


def _leader_of(bootstrap: str, topic: str, partition: int) -> int:
    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics[topic] \
        .partitions[partition].leader


@needs_java
def test_three_nodes_keep_every_acknowledged_record_when_one_dies(cluster_name: str) -> None:
    began = time.monotonic()
    bootstrap = embedded.start(3, cluster_name, port=0, use_env=False, ephemeral=True)
    assert len(bootstrap.split(",")) == 3
    topic = create_topic(bootstrap, unique_name("replicated"), partitions=3, replication_factor=3,
                         config={"min.insync.replicas": "2"})

    acked: list[bytes] = []
    failed: list[KafkaError] = []
    lock = threading.Lock()

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        with lock:
            if err is not None:
                failed.append(err)
            else:
                acked.append(msg.value() or b"")

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 60000})

    def send(values: range) -> None:
        for i in values:
            producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), on_delivery=on_delivery)
            producer.poll(0)
            time.sleep(0.01)

    send(range(0, 100))
    assert producer.flush(30) == 0
    victim = _leader_of(bootstrap, topic, 0)
    assert embedded.kill_node(cluster_name, victim) is True
    send(range(100, 200))  # while leadership moves off the dead node
    assert producer.flush(60) == 0

    assert not failed, failed[:3]
    assert len(acked) == 200
    survivors = ",".join(a for i, a in enumerate(bootstrap.split(",")) if i != victim)
    read = await_records(survivors, topic, len(acked), timeout=60, decode=bytes)
    assert sorted(read) == sorted(acked)

    embedded.start_node(cluster_name, victim)  # the node rejoins the quorum
    assert len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers) == 3
    assert embedded.stop(cluster_name) is True
    assert time.monotonic() - began < 120


# --------------------------------------------------------------------------- CLI and environment


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``pipeline broker ...`` the way a shell script would (separate stdout / stderr)."""
    code = "from pipeline.broker.cli import broker_app; broker_app()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=240,
                          cwd=REPO_ROOT, env={**os.environ, **(env or {})})


@needs_java
def test_cli_start_prints_bootstrap_last_and_status_stop(cluster_name: str) -> None:
    started = _cli("start", "--name", cluster_name, "--port", "0", env={embedded.ENV_BOOTSTRAP: ""})
    assert started.returncode == 0, started.stderr
    bootstrap = started.stdout.strip().splitlines()[-1]
    assert bootstrap == embedded.status(cluster_name).bootstrap
    assert _cli("status", "--name", cluster_name).returncode == 0

    assert _cli("stop", "--name", cluster_name).returncode == 0
    assert _cli("status", "--name", cluster_name).returncode == 1


def test_cli_start_with_external_cluster_only_checks_it(kafka_bootstrap: str) -> None:
    result = _cli("start", env={embedded.ENV_BOOTSTRAP: kafka_bootstrap})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == kafka_bootstrap
    assert "using the existing cluster" in result.stderr


def test_cli_start_failure_exits_nonzero_with_message() -> None:
    result = _cli("start", "--timeout", "2", env={embedded.ENV_BOOTSTRAP: "127.0.0.1:1"})

    assert result.returncode == 1
    assert "does not answer" in result.stderr and result.stdout == ""


# --------------------------------------------------------------------------- fetch and Java errors (no broker)


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(_fetch.shutil, "which", lambda _name: None)

    with pytest.raises(BrokerError, match="Java 17 or newer is needed"):
        _fetch.check_java()


def test_old_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = _script(tmp_path / "jdk" / "bin" / "java", "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    monkeypatch.setenv("JAVA_HOME", str(java.parent.parent))

    with pytest.raises(BrokerError, match=r"needs Java 17 or newer, but .* is Java 11"):
        _fetch.check_java()


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fetch.shutil, "which", lambda _name: None)

    with pytest.raises(BrokerError, match=r"Maven \(`mvn`\) is needed"):
        _fetch.ensure_kafka(tmp_path)


def test_maven_failure_shows_its_last_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mvn = _script(tmp_path / "bin" / "mvn", "echo '[ERROR] Could not resolve org.apache.kafka:kafka_2.13'\nexit 1\n")
    monkeypatch.setattr(_fetch.shutil, "which", lambda _name: str(mvn))

    with pytest.raises(BrokerError, match=r"Maven failed \(exit 1\)(.|\n)*Could not resolve"):
        _fetch.ensure_kafka(tmp_path / "home")


def test_jars_are_fetched_once_and_a_partial_download_is_redone(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    jar = f"kafka_2.13-{_fetch.KAFKA_VERSION}.jar"
    mvn = _script(tmp_path / "bin" / "mvn", f"""
echo run >> {calls}
for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac; done
mkdir -p "$out" && touch "$out/{jar}"
""")
    monkeypatch.setattr(_fetch.shutil, "which", lambda _name: str(mvn))
    home = tmp_path / "home"

    libs = _fetch.ensure_kafka(home)
    _fetch.ensure_kafka(home)
    assert (libs / jar).is_file() and calls.read_text().count("run") == 1
    assert (home / f"kafka-{_fetch.KAFKA_VERSION}" / "fetch-pom.xml").is_file()

    (home / f"kafka-{_fetch.KAFKA_VERSION}" / ".complete").unlink()  # as if interrupted before the marker
    _fetch.ensure_kafka(home)
    assert calls.read_text().count("run") == 2
