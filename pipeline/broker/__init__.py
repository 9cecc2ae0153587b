"""The embedded Apache Kafka broker: a real KRaft broker for development and tests.

See :mod:`pipeline.broker.embedded` for the API and ``docs/broker.md`` for how it works.
Importing this package does not start anything.
"""

from .embedded import (
                       DEFAULT_NAME,
                       DEFAULT_PORT,
                       KAFKA_VERSION,
                       ClusterStatus,
                       NodeStatus,
                       destroy,
                       external_bootstrap,
                       kill_node,
                       start,
                       start_node,
                       status,
                       stop,
)
from .errors import BrokerError

__all__ = [
                       "DEFAULT_NAME",
                       "DEFAULT_PORT",
                       "KAFKA_VERSION",
                       "BrokerError",
                       "ClusterStatus",
                       "NodeStatus",
                       "destroy",
                       "external_bootstrap",
                       "kill_node",
                       "start",
                       "start_node",
                       "status",
                       "stop",
]
