"""The one exception the embedded broker raises.

Every failure a user can act on (no Java, no Maven, a port in use, the broker died while
starting) becomes a :class:`BrokerError` whose message says what happened and what to do,
so the CLI can print it as-is instead of a traceback.
"""

from __future__ import annotations


class BrokerError(RuntimeError):
    """The embedded Kafka broker could not be fetched, started, reached or stopped."""
