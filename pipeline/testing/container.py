"""Kafka in a container for the pytest plugin: any image with the official ``apache/kafka`` image's contract.

That contract is small: ``KAFKA_*`` variables become server properties (``KAFKA_NUM_PARTITIONS`` is
``num.partitions``), KRaft storage is formatted at start, ``KAFKA_HEAP_OPTS`` sizes the JVM. The official image
has it, and so has the image ``make images`` builds from Debian's packages when no registry answers
(deploy/images.sh); ``PIPELINE_TEST_KAFKA_IMAGE`` picks one.

Why not testcontainers' ``KafkaContainer``: it starts Confluent's images through their own start script, and a
user's suite should run on the same Kafka release as the embedded broker and the deployment (4.3.1), with the
settings the services need (transactions on one node, no topic auto-creation).

Ports: the broker listens on a port chosen free on this host and advertises ``127.0.0.1:<port>``. With
``PIPELINE_TEST_CONTAINER_NETWORK=host`` the container shares the host's network (podman without bridge
networking, or to keep test traffic on loopback); otherwise (``bridge``, the default) the same port is published
on 127.0.0.1, so the advertised address is right on both sides.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

ENV_TEST_IMAGE = "PIPELINE_TEST_KAFKA_IMAGE"
ENV_TEST_NETWORK = "PIPELINE_TEST_CONTAINER_NETWORK"  # bridge (default) | host
#: The official image of the Kafka release the embedded broker runs (pipeline/broker/_fetch.py KAFKA_VERSION).
DEFAULT_TEST_IMAGE = "docker.io/apache/kafka:4.3.1"
#: Like the embedded test broker: small, transactions on one node, topics created by the tests.
TEST_SETTINGS = {
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    "KAFKA_NUM_PARTITIONS": "3",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "6",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "3",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_LOG_CLEANER_BACKOFF_MS": "1000",
    "KAFKA_HEAP_OPTS": "-Xms256m -Xmx512m",
}


def broker_env(port: int, controller_port: int, *, host_network: bool) -> dict[str, str]:
    """The container's environment: a single KRaft node advertising ``127.0.0.1:port``."""
    bind = "127.0.0.1" if host_network else "0.0.0.0"  # bridge: all of the container's own interfaces
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://{bind}:{port},CONTROLLER://{bind}:{controller_port}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller_port}",
        **TEST_SETTINGS,
    }


def container_broker(timeout: float = 180) -> Iterator[str]:
    """Start the container, yield its bootstrap servers once transactions work, remove it afterwards."""
    from testcontainers.core.container import DockerContainer

    from pipeline.broker import _probe
    from pipeline.broker._util import free_ports

    image = os.environ.get(ENV_TEST_IMAGE, "").strip() or DEFAULT_TEST_IMAGE
    network = os.environ.get(ENV_TEST_NETWORK, "bridge").strip().lower()
    if network not in ("bridge", "host"):
        raise ValueError(f"{ENV_TEST_NETWORK} must be bridge or host, not {network!r}")
    port, controller_port = free_ports(2)
    container: Any = DockerContainer(image)
    for key, value in broker_env(port, controller_port, host_network=network == "host").items():
        container.with_env(key, value)
    if network == "host":
        container.with_kwargs(network_mode="host")
    else:
        container.ports[f"{port}/tcp"] = ("127.0.0.1", port)  # docker SDK form: published on loopback only
    container.start()
    try:
        bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + timeout

        def alive() -> None:
            container.get_wrapped_container().reload()
            status = container.get_wrapped_container().status
            if status not in ("created", "running"):
                logs = b"".join(container.get_logs()).decode(errors="replace")[-3000:]
                raise RuntimeError(f"the Kafka container ({image}) is {status}:\n{logs}")

        _probe.wait_metadata(bootstrap, 1, deadline, alive)
        _probe.wait_transactions(bootstrap, deadline, alive)
        yield bootstrap
    finally:
        container.stop()
