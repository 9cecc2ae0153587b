"""The SDK: define functions with triggers, cancel rules and steps, under inngest-py's names."""

from .app import Registry, load_app
from .client import Inngest
from .context import Context, ContextSync
from .definitions import (Batch, Cancel, Concurrency, Debounce, DefinitionError, RateLimit, Throttle, Timeouts,
                          TriggerCron, TriggerEvent)
from .function import Function
from .steps import NonRetriableError, RetryAfterError, Step, StepError, StepSync

__all__ = ["Inngest", "Registry", "load_app", "Context", "ContextSync", "Cancel", "Concurrency", "DefinitionError",
           "Timeouts", "TriggerEvent", "TriggerCron", "Debounce", "Throttle", "RateLimit", "Batch", "Function",
           "Step", "StepSync", "NonRetriableError", "RetryAfterError", "StepError"]
