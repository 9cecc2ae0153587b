"""A Stack shared by the tests of one module, for tests that only send events with their own ids and wait for
their own runs: building a Stack creates 10 topics and starts 4 services, and each group join costs a second.
A test that kills, stops or reconfigures a service, or checks the stack as a whole (every run, every system
event), builds its own ``Stack``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.testing.stack import Stack

from .apps import app


@pytest.fixture(scope="module")
def shared_stack(kafka_bootstrap: str) -> Iterator[Stack]:
    """The e2e app's stack for this module's tests (default services and settings); never stop its services."""
    with Stack(app, kafka_bootstrap) as stack:
        yield stack
