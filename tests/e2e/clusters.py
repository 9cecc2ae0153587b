"""A broker of a test's own, for faults that would break the session broker (a killed or frozen node)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.broker import embedded


@contextmanager
def own_cluster(nodes: int, prefix: str) -> Iterator[tuple[str, str]]:
    """Start an ephemeral embedded cluster; yield (name, bootstrap); destroy it (thawing a frozen node first)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    bootstrap = embedded.start(nodes=nodes, name=name, port=0, use_env=False, ephemeral=True)
    try:
        yield name, bootstrap
    finally:
        for index in range(nodes):
            embedded.pause_node(name, index, False)
        embedded.destroy(name)
