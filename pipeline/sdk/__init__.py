"""The SDK: define functions with triggers, cancel rules and steps (Inngest's Python SDK naming)."""

from .app import App, Registry, load_app
from .context import Context
from .definitions import Cancel, Concurrency, DefinitionError, Timeouts, TriggerEvent
from .function import Function
from .steps import AsyncStep, NonRetriableError, RetryAfterError, Step, StepError

__all__ = ["App", "Registry", "load_app", "Context", "Cancel", "Concurrency", "DefinitionError", "Timeouts", "TriggerEvent",
           "Function", "Step", "AsyncStep", "NonRetriableError", "RetryAfterError", "StepError"]
