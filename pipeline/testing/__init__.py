"""Testing support: the ``pipeline`` pytest plugin and helpers for real-Kafka tests.

The helpers are imported lazily (PEP 562) so that loading the pytest plugin, which
imports this package, does not pull in the Kafka client for projects that never use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .helpers import await_records, create_topic, free_port, produce, unique_name, until, wait_for_topic

__all__ = ["await_records", "create_topic", "free_port", "produce", "unique_name", "until", "wait_for_topic"]


def __getattr__(name: str) -> Any:
    """Import ``pipeline.testing.helpers`` on first use of one of its names."""
    if name in __all__:
        from . import helpers

        return getattr(helpers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
