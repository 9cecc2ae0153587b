"""Run commands (``RunCommand`` records on ``run-commands``, read by the run owner), and the records that start
one run: its start command (to the owner's partition) and its cancel listeners.

Pure. The matcher starts a run for every matched event and ``pipeline replay runs`` for a replayed run, with
:func:`start_records`, so both start runs the same way; the canceller and the API send cancel and resume
commands built here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..serde import CANCEL_LISTENER, RUN_COMMAND
from .joins import JoinedFunction, listeners_for
from .keys import listener_record_key, partition_for
from .records import RunCommand


def cancel_command(run_id: str, function_id: str, reason: str, source_id: str | None, now_ms: int) -> RunCommand:
    """A cancel command for the run owner (cancel_on, rest, bulk or timeout)."""
    record: RunCommand = {
        "kind": "cancel",
        "run_id": run_id,
        "function_id": function_id,
        "ts": now_ms,
        "event": None,
        "received_at": None,
        "reason": reason,
        "source_id": source_id,
        "attempt": 0,
        "step_id": None,
    }
    return record


def resume_command(run_id: str, function_id: str, step_id: str, event_json: str, now_ms: int) -> RunCommand:
    """Answer a run's wait_for_event step with the event that matched (sent by the canceller)."""
    record: RunCommand = {
        "kind": "resume",
        "run_id": run_id,
        "function_id": function_id,
        "ts": now_ms,
        "event": event_json,
        "received_at": None,
        "reason": None,
        "source_id": None,
        "attempt": 0,
        "step_id": step_id,
    }
    return record


def start_command(
    run_id: str, function_id: str, event_json: str, received_at: int, now_ms: int, replay_of: str | None = None
) -> RunCommand:
    """The command that schedules a run (sent by the matcher, or by ``pipeline replay runs`` with the id of the
    run it replays)."""
    record: RunCommand = {
        "kind": "start",
        "run_id": run_id,
        "function_id": function_id,
        "ts": now_ms,
        "event": event_json,
        "received_at": received_at,
        "reason": None,
        "source_id": replay_of,
        "attempt": 0,
        "step_id": None,
    }
    return record


class StartedFunction(JoinedFunction, Protocol):
    """What starting a run reads of a function: its join rules and the key of its concurrency slots."""

    def owner_key(self, event: dict[str, Any]) -> str | None: ...


# (topic role, key, schema name, value, partition): the matcher and the replay tool map the role to a topic
Record = tuple[str, str, str, Mapping[str, Any], int]


def start_records(
    fn: StartedFunction,
    event: dict[str, Any],
    event_json: str,
    run_id: str,
    received_at: int,
    now: int,
    command_partitions: int,
    index_partitions: int,
    replay_of: str | None = None,
) -> list[Record]:
    """The start command and the cancel listeners of one run, each with its topic role, key and partition.
    (The matcher builds the same records with :mod:`pipeline.protocol.starts`, the command already encoded.)"""
    # Runs that share concurrency slots meet at one owner partition; others go by run id.
    owner_key = fn.owner_key(event)
    owner = partition_for(owner_key, command_partitions) if owner_key is not None else -1
    command = start_command(run_id, fn.id, event_json, received_at, now, replay_of)
    records: list[Record] = [("commands", run_id, RUN_COMMAND, command, owner)]
    records += listener_records(fn, event, run_id, received_at, now, owner, index_partitions)
    return records


def listener_records(fn: StartedFunction, event: dict[str, Any], run_id: str, received_at: int, now: int,
                     owner: int, index_partitions: int) -> list[Record]:
    """The cancel listeners of one run (owner: its run-commands partition, -1 by run id), each with its topic
    role, key and partition (by join key)."""
    records: list[Record] = []
    for listener in listeners_for(fn, event, run_id, received_at, now):
        listener["owner_partition"] = owner
        key = listener["join_key"]
        records.append(
            ("index", listener_record_key(key, run_id), CANCEL_LISTENER, listener, partition_for(key, index_partitions))
        )
    return records
