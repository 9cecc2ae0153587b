"""pipeline: a Kafka-native runtime for event-driven, durable functions with Inngest semantics.

Code written for inngest-py runs after ``import pipeline as inngest`` for what is built (see the README).
"""

from .sdk import (Batch, Cancel, Concurrency, Context, ContextSync, Debounce, DefinitionError, Function, Inngest,
                  NonRetriableError, RateLimit, RetryAfterError, Step, StepError, StepSync, Throttle, Timeouts,
                  TriggerCron, TriggerEvent)
from .serde.models import Event

from . import django, fast_api, flask  # noqa: E402  (inngest.<framework>.serve, after the SDK they use)

__all__ = ["django", "fast_api", "flask", "Batch", "Cancel", "Concurrency", "Context", "ContextSync", "Debounce", "DefinitionError", "Event",
           "Function", "Inngest", "NonRetriableError", "RateLimit", "RetryAfterError", "Step", "StepError",
           "StepSync", "Throttle", "Timeouts", "TriggerCron", "TriggerEvent"]
