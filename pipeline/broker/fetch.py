"""``python -m pipeline.broker.fetch``: fetch the pinned Apache Kafka jars into the cache if missing.

The README's two commands call this, so a fresh machine downloads the broker once, up front,
instead of inside the first test's time budget.
"""

from __future__ import annotations

import sys

from .embedded import ensure_kafka
from .errors import BrokerError


def main() -> int:
    try:
        libs = ensure_kafka()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(libs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
