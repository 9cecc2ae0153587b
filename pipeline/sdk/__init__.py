"""The SDK: define functions with triggers, cancel rules and steps, under inngest-py's names."""

from .app import Registry, load_app
from .client import Inngest
from .context import Context, ContextSync
from .definitions import (
                          Batch,
                          Cancel,
                          Concurrency,
                          Debounce,
                          DefinitionError,
                          Priority,
                          RateLimit,
                          Singleton,
                          Throttle,
                          Timeouts,
                          TriggerCron,
                          TriggerEvent,
)
from .function import Function
from .steps import NonRetriableError, RetryAfterError, Step, StepError, StepSync

__all__ = [
                          "Batch",
                          "Cancel",
                          "Concurrency",
                          "Context",
                          "ContextSync",
                          "Debounce",
                          "DefinitionError",
                          "Function",
                          "Inngest",
                          "NonRetriableError",
                          "Priority",
                          "RateLimit",
                          "Registry",
                          "RetryAfterError",
                          "Singleton",
                          "Step",
                          "StepError",
                          "StepSync",
                          "Throttle",
                          "Timeouts",
                          "TriggerCron",
                          "TriggerEvent",
                          "load_app",
]
