"""Fixtures of the `containers` tests: the engine (skipped, saying why, when there is none), the images of
`make images`, and Testcontainers' DOCKER_HOST (podman's API service)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .engine import build_images, docker_api, find_engine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is a `containers` test."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def engine() -> str:
    found, why = find_engine()
    if found is None:
        pytest.skip(why)
    return found


@pytest.fixture(scope="session")
def images(engine: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build (or find cached) the service and Kafka images; the log is kept with the test's tmp files."""
    return build_images(engine, tmp_path_factory.mktemp("images") / "images.log")


@pytest.fixture(scope="session")
def docker_host(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with docker_api(engine, tmp_path_factory.mktemp("engine")) as host:
        yield host
