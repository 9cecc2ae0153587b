"""pytest plugin (entry point ``pipeline``): a real Kafka for tests of pipeline functions.

Fixtures:

``kafka_bootstrap`` (session)
    Bootstrap servers of a Kafka cluster ready for transactions. The first that applies:

    1. ``PIPELINE_TEST_BOOTSTRAP`` -- an existing cluster (CI service, a dev broker);
    2. Kafka 4.3.1 in a container (Testcontainers), if a Docker engine answers within ~2 s (``DOCKER_HOST``,
       podman's ``podman system service`` socket too): image ``PIPELINE_TEST_KAFKA_IMAGE`` (default: the
       official apache/kafka), see :mod:`pipeline.testing.container`;
    3. the embedded Kafka broker on free ports in a throwaway cluster dir under
       ``$PIPELINE_HOME`` (deleted at session end; the jar cache is reused).

    ``PIPELINE_TEST_BROKER=embedded|docker`` forces 3 or 2.

    Under pytest-xdist (``-n N``) the workers share one embedded broker: the first worker that needs
    it starts it under a name the controller chose, the others reuse it, and the controller deletes
    it when the run ends.

``unique_topic`` (function)
    A topic *name* unique to the test (not created: use
    :func:`pipeline.testing.helpers.create_topic`).

Importing this module starts nothing and imports no Kafka client; the broker is started
only when a test asks for ``kafka_bootstrap``, so projects that merely have ``pipeline``
installed pay nothing for the plugin.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_TEST_BOOTSTRAP = "PIPELINE_TEST_BOOTSTRAP"
ENV_TEST_BROKER = "PIPELINE_TEST_BROKER"  # auto (default) | docker | embedded
#: Set by the xdist controller for its workers: the name of the embedded cluster they share.
ENV_SHARED_CLUSTER = "PIPELINE_TEST_SHARED_CLUSTER"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker our fixtures' users put on broker tests, so --strict-markers passes."""
    config.addinivalue_line("markers", "integration: needs a real Kafka broker")
    config.addinivalue_line("markers", "slow: takes more than a minute")
    if _is_xdist_controller(config) and not os.environ.get(ENV_SHARED_CLUSTER):
        # The workers inherit the environment: one embedded cluster name for all of them (started lazily by
        # the first worker that asks for kafka_bootstrap, deleted by pytest_unconfigure below).
        name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        os.environ[ENV_SHARED_CLUSTER] = name
        config.stash[_OWNED_CLUSTER] = name


_OWNED_CLUSTER = pytest.StashKey[str]()


def _is_xdist_controller(config: pytest.Config) -> bool:
    """True in the process that hands tests to xdist workers (``-n N`` with N > 0), False everywhere else."""
    if hasattr(config, "workerinput"):
        return False
    try:
        return bool(config.getoption("numprocesses"))
    except ValueError:  # xdist not installed
        return False


def pytest_unconfigure(config: pytest.Config) -> None:
    """The xdist controller deletes the cluster its workers shared (if one of them started it)."""
    name = config.stash.get(_OWNED_CLUSTER, None)
    if name is not None:
        os.environ.pop(ENV_SHARED_CLUSTER, None)
        from pipeline.broker import embedded

        if embedded.cluster_dir(name).exists():
            _discard(name)


def _docker_available(timeout: float | None = None) -> bool:
    """True if a Docker engine answers a ping within ``timeout``; never hangs or raises.

    The default is 2 s, or 10 s when ``DOCKER_HOST`` names the engine: podman's API service took over 2 s for the
    first call after it started (the client's version negotiation), and falling back to the embedded broker
    then would ignore the engine the user pointed at."""
    host = os.environ.get("DOCKER_HOST")
    timeout = timeout if timeout is not None else (10.0 if host else 2.0)
    if not host and not any(Path(p).exists() for p in ("/var/run/docker.sock",
                                                       str(Path.home() / ".docker/run/docker.sock"))):
        return False  # no engine socket: skip importing the SDK at all
    try:
        import docker

        client = docker.from_env(timeout=int(max(1, timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no usable Docker"
        return False


def _container_broker() -> Iterator[str]:
    """Kafka 4.3.1 in a container (:mod:`pipeline.testing.container`); a start that fails fails the session."""
    from .container import container_broker

    try:
        yield from container_broker()
    except Exception as exc:  # noqa: BLE001 - the engine's or the broker's error, told once instead of per test
        pytest.fail(f"could not start Kafka in a container ({ENV_TEST_BROKER}=docker or an engine answered): "
                    f"{type(exc).__name__}: {exc}", pytrace=False)


def _embedded_broker() -> Iterator[str]:
    """A throwaway embedded cluster on free ports, deleted at the end of the session (by the xdist controller
    when workers share it)."""
    from pipeline.broker import embedded

    shared = os.environ.get(ENV_SHARED_CLUSTER, "").strip()
    if not shared:
        embedded.reap_orphans()  # clusters left by killed pytest runs (not under xdist: a sibling's is no orphan)
    name = shared or f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        # shared: the first worker starts it (its pid recorded as owner), the others find it running and reuse it
        bootstrap = embedded.start(1, name, port=0, use_env=False, ephemeral=True, timeout=180)
    except embedded.BrokerError as exc:
        if not shared:
            embedded.destroy(name)
        pytest.fail(f"could not start the embedded Kafka broker for tests: {exc}", pytrace=False)
    try:
        yield bootstrap
    finally:
        if not shared:
            _discard(name)


def _discard(name: str) -> None:
    """SIGKILL the throwaway cluster's node and delete its folder: its data is deleted anyway, so a clean
    shutdown (which waits up to 15 s for a broker that still has client connections) buys nothing."""
    from pipeline.broker import embedded

    try:
        embedded.kill_node(name, 0)
    except embedded.BrokerError:
        pass  # no such cluster or node: destroy below still removes whatever is left
    embedded.destroy(name)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Kafka for this test session (see the module doc for which)."""
    external = os.environ.get(ENV_TEST_BOOTSTRAP, "").strip()
    if external:
        yield external
        return
    mode = os.environ.get(ENV_TEST_BROKER, "auto").strip().lower()
    if mode not in ("auto", "docker", "embedded"):
        pytest.fail(f"{ENV_TEST_BROKER} must be auto, docker or embedded, not {mode!r}", pytrace=False)
    use_docker = mode == "docker" or (mode == "auto" and _docker_available())
    if mode == "docker" and not _docker_available():
        pytest.fail(f"{ENV_TEST_BROKER}=docker but no Docker engine answers", pytrace=False)
    yield from (_container_broker() if use_docker else _embedded_broker())


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name unique to this test run, derived from the test name for readable broker logs."""
    from .helpers import unique_name

    stem = _UNSAFE.sub("-", request.node.name).strip("-._")[:40] or "topic"
    return unique_name(stem)
