"""Avro serde: single-object encoding, a schema catalog, and names of the record types."""

from .avro import Serde
from .catalog import Catalog, default_catalog
from .errors import SerdeError

EVENT = "pipeline.Event"
RUN_COMMAND = "pipeline.RunCommand"
RUN_STATE = "pipeline.RunState"
CANCEL_LISTENER = "pipeline.CancelListener"
CANCEL_SIGNAL = "pipeline.CancelSignal"
BULK_CANCELLATION = "pipeline.BulkCancellation"
INVOCATION = "pipeline.Invocation"
STEP_OUTCOME = "pipeline.StepOutcome"
EVENT_SEEN = "pipeline.EventSeen"
FUNCTION_DEF = "pipeline.FunctionDef"
APP_SYNC = "pipeline.AppSync"
FLOW_LIMIT = "pipeline.FlowLimit"
DROPPED_EVENT = "pipeline.DroppedEvent"

__all__ = [
    "APP_SYNC",
    "BULK_CANCELLATION",
    "CANCEL_LISTENER",
    "CANCEL_SIGNAL",
    "DROPPED_EVENT",
    "EVENT",
    "EVENT_SEEN",
    "FLOW_LIMIT",
    "FUNCTION_DEF",
    "INVOCATION",
    "RUN_COMMAND",
    "RUN_STATE",
    "STEP_OUTCOME",
    "Catalog",
    "Serde",
    "SerdeError",
    "default_catalog",
]
