"""pipeline: a Kafka-native runtime for event-driven, durable functions with Inngest semantics.

Code written for inngest-py runs after ``import pipeline as inngest`` for what is built (see the README).
"""

from . import django, fast_api, flask
from .sdk import (
                  Batch,
                  Cancel,
                  Concurrency,
                  Context,
                  ContextSync,
                  Debounce,
                  DefinitionError,
                  Function,
                  Inngest,
                  NonRetriableError,
                  Priority,
                  RateLimit,
                  RetryAfterError,
                  Singleton,
                  Step,
                  StepError,
                  StepSync,
                  Throttle,
                  Timeouts,
                  TriggerCron,
                  TriggerEvent,
)
from .serde.models import Event

__all__ = [
                  "Batch",
                  "Cancel",
                  "Concurrency",
                  "Context",
                  "ContextSync",
                  "Debounce",
                  "DefinitionError",
                  "Event",
                  "Function",
                  "Inngest",
                  "NonRetriableError",
                  "Priority",
                  "RateLimit",
                  "RetryAfterError",
                  "Singleton",
                  "Step",
                  "StepError",
                  "StepSync",
                  "Throttle",
                  "Timeouts",
                  "TriggerCron",
                  "TriggerEvent",
                  "django",
                  "fast_api",
                  "flask",
]
