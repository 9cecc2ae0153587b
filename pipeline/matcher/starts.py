"""The records that start one run: its start command (to the owner's partition) and its cancel listeners.

Pure; used by the matcher for every matched event and by ``pipeline replay runs`` for a replayed run, so both
start runs the same way.
"""

from __future__ import annotations

from typing import Any

from ..canceller.keys import listener_record_key, partition_for
from ..canceller.registration import listeners_for
from ..run_owner.state import start_command
from ..serde import CANCEL_LISTENER, RUN_COMMAND

# (topic role, key, schema name, value, partition): the matcher and the replay tool map the role to a topic
Record = tuple[str, str, str, dict[str, Any], int]


def start_records(fn: Any, event: dict[str, Any], event_json: str, run_id: str, received_at: int, now: int,
                  command_partitions: int, index_partitions: int, replay_of: str | None = None) -> list[Record]:
    # Runs that share concurrency slots meet at one owner partition; others go by run id.
    owner_key = fn.owner_key(event)
    owner = partition_for(owner_key, command_partitions) if owner_key is not None else -1
    command = start_command(run_id, fn.id, event_json, received_at, now)
    command["source_id"] = replay_of
    records: list[Record] = [("commands", run_id, RUN_COMMAND, command, owner)]
    for listener in listeners_for(fn, event, run_id, received_at, now):
        listener["owner_partition"] = owner
        key = listener["join_key"]
        records.append(("index", listener_record_key(key, run_id), CANCEL_LISTENER, listener,
                        partition_for(key, index_partitions)))
    return records
