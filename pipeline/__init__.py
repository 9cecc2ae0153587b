"""pipeline: a Kafka-native runtime for event-driven, durable functions with Inngest semantics.

Code written for inngest-py runs after ``import pipeline as inngest`` for what is built (see the README).
"""

from .sdk import (Batch, Cancel, Concurrency, Context, ContextSync, Debounce, DefinitionError, Function, Inngest,
                  NonRetriableError, RateLimit, RetryAfterError, Step, StepError, StepSync, Throttle, Timeouts,
                  TriggerCron, TriggerEvent)
from .serde.models import Event

from . import fast_api  # noqa: E402  (inngest.fast_api.serve, after the SDK it uses)

__all__ = ["fast_api", "Batch", "Cancel", "Concurrency", "Context", "ContextSync", "Debounce", "DefinitionError", "Event",
           "Function", "Inngest", "NonRetriableError", "RateLimit", "RetryAfterError", "Step", "StepError",
           "StepSync", "Throttle", "Timeouts", "TriggerCron", "TriggerEvent"]
