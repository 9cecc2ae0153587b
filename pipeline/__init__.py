"""pipeline: a Kafka-native runtime for event-driven, durable functions with Inngest semantics."""

from .sdk import (App, AsyncStep, Cancel, Concurrency, Context, DefinitionError, Function, NonRetriableError,
                  RetryAfterError, Step, StepError, Timeouts, TriggerEvent)
from .serde.models import Event

__all__ = ["App", "AsyncStep", "Cancel", "Concurrency", "Context", "DefinitionError", "Event", "Function",
           "NonRetriableError", "RetryAfterError", "StepError", "Step", "Timeouts", "TriggerEvent"]
