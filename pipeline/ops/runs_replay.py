"""``pipeline replay runs``: new runs of the same events for runs of a function that ended (say) Failed or
Cancelled in a time window, as Inngest's replay does.

Each new run gets the original's triggering event unchanged and ``replay_of`` = the original run id, and an id
derived from the original's, so repeating the command with the same arguments starts nothing new (the owner
ignores a start for a run that exists). They start as the matcher starts runs (:mod:`pipeline.protocol.commands`):
to the owner's partition, with their cancel listeners, received now (an old cancel event cannot cancel them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from ..kafka.client import producer_config
from ..kafka.messages import key_text
from ..protocol.commands import start_records
from ..protocol.ids import derived_ulid
from ..serde import RUN_STATE, Serde
from .deadletters import read_all


@dataclass(frozen=True)
class Selection:
    function_id: str
    statuses: frozenset[str]
    since_ms: int | None = None
    until_ms: int | None = None

    def keeps(self, state: dict[str, Any]) -> bool:
        fid = state["function_id"]
        if fid != self.function_id and not fid.endswith("-" + self.function_id):
            return False
        if state["status"].lower() not in self.statuses:
            return False
        at = state["queued_at"]
        return (self.since_ms is None or at >= self.since_ms) and (self.until_ms is None or at < self.until_ms)


def replay_id(original: dict[str, Any]) -> str:
    """The replay's run id: derived from the original's, so the same run is replayed once."""
    return derived_ulid(original["queued_at"], "replay", original["run_id"])


def latest_states(servers: str, runs_topic: str, serde: Serde) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for msg in read_all(servers, runs_topic):
        key = key_text(msg) or ""
        if msg.value() is None:
            table.pop(key, None)
            continue
        state = serde.decode_as(RUN_STATE, msg.value())
        table[state["run_id"]] = state
    return table


def replay_runs(servers: str, registry: Any, topics: dict[str, str], selection: Selection,
                partitions: tuple[int, int], *, dry_run: bool = False) -> list[tuple[str, str]]:
    """(original run id, replay run id) of every selected run; produced unless ``dry_run``."""
    serde = Serde()
    table = latest_states(servers, topics["runs"], serde)
    chosen = sorted((s for s in table.values() if selection.keeps(s) and not s.get("replay_of")),
                    key=lambda s: s["queued_at"])
    pairs = [(s["run_id"], replay_id(s)) for s in chosen]
    if dry_run or not chosen:
        return pairs
    producer = Producer(producer_config(servers))
    now = int(time.time() * 1000)
    for state, (_, new_id) in zip(chosen, pairs, strict=True):
        fn = registry.by_id.get(state["function_id"])
        if fn is None:
            raise ValueError(f"function {state['function_id']!r} is not in the app given with --app")
        event = json.loads(state["event"])
        for role, key, schema, value, partition in start_records(fn, event, state["event"], new_id, now, now,
                                                                 partitions[0], partitions[1],
                                                                 replay_of=state["run_id"]):
            producer.produce(topics[role], key=key, value=serde.encode(schema, value), partition=partition)
    if producer.flush(30):
        raise RuntimeError("replayed runs were not all delivered")
    return pairs
