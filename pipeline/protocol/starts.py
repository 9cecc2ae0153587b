"""The start records of one event's runs, built for the matcher's hot path: the same records as
:func:`pipeline.protocol.commands.start_records`, with the start command already encoded.

Why: the matcher starts ~2.4 runs per event, and building and encoding each run's ``RunCommand`` field by field
was a third of its CPU. All the fields of a start command but two (its run id and function id) are the event's,
and an Avro record is its fields' encodings one after another, so here the fields an event's runs share are
encoded once per event, a function's id once per function, and a run costs its run id
(:class:`pipeline.protocol.ids.EventRunIds`) and one join of bytes. The bytes are exactly what
``Serde.encode(RUN_COMMAND, start_command(...))`` writes (``tests/unit/test_starts.py``), so readers see no change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..serde import RUN_COMMAND, Serde, SerdeError
from .commands import StartedFunction, listener_records, start_command
from .ids import ULID_LENGTH, EventRunIds
from .keys import partition_for

_MAX_FUNCTIONS = 100_000  # cached function-id fields (functions come and go with syncs)

# a start_records Record whose value may be already encoded (bytes: the start command)
EncodedRecord = tuple[str, str, str, Mapping[str, Any] | bytes, int]


class StartCodec:
    """What every start command shares, encoded once per process (one per :class:`~pipeline.serde.Serde`)."""

    def __init__(self, serde: Serde) -> None:
        template = start_command("", "", "", 0, 0)
        self._head = serde.header(RUN_COMMAND) + serde.fields_encoder(RUN_COMMAND, "kind", "kind")(template)
        # A run id is a ULID, 26 ASCII characters: its field is always this length prefix and then its bytes
        run_id = serde.fields_encoder(RUN_COMMAND, "run_id", "run_id")
        self._run_id_len = run_id({"run_id": "0" * ULID_LENGTH})[:-ULID_LENGTH]
        self._function = serde.fields_encoder(RUN_COMMAND, "function_id", "function_id")
        self._rest = serde.fields_encoder(RUN_COMMAND, "ts")  # every field after function_id
        self._functions: dict[str, bytes] = {}
        # The pieces assume RunCommand's fields begin kind, run_id, function_id, ts: a schema that moves them must
        # fail here, at start-up, not write records its readers cannot decode
        sample = start_command("0" * ULID_LENGTH, "app-fn", '{"data":{}}', 1765147000123, 1765147000456, "r")
        pieced = b"".join((self._head, self._run_id_len, sample["run_id"].encode(),
                           self.function_field(sample["function_id"]), self._rest(sample)))
        if pieced != serde.encode(RUN_COMMAND, sample):
            raise SerdeError("RunCommand's fields no longer begin kind, run_id, function_id, ts: "
                             "pipeline/protocol/starts.py must follow the schema")

    def function_field(self, function_id: str) -> bytes:
        """The encoded ``function_id`` field, kept per function."""
        field = self._functions.get(function_id)
        if field is None:
            if len(self._functions) >= _MAX_FUNCTIONS:
                self._functions.clear()
            field = self._functions[function_id] = self._function({"function_id": function_id})
        return field

    def event(self, event: dict[str, Any], event_json: str, received_at: int, now: int, command_partitions: int,
              index_partitions: int, replay_of: str | None = None) -> EventStarts:
        """The starts of ``event``'s runs (its id and ts give the run ids)."""
        return EventStarts(self, event, event_json, received_at, now, command_partitions, index_partitions,
                           replay_of)


class EventStarts:
    """One event's run starts: :meth:`records` per function it starts (:meth:`all_records` for all of them)."""

    __slots__ = ("_codec", "_command_partitions", "_index_partitions", "_now", "_received_at", "_rest", "event",
                 "run_ids")

    def __init__(self, codec: StartCodec, event: dict[str, Any], event_json: str, received_at: int, now: int,
                 command_partitions: int, index_partitions: int, replay_of: str | None) -> None:
        self._codec = codec
        self.event = event
        self.run_ids = EventRunIds(event["id"], event["ts"])
        self._rest = codec._rest(start_command("", "", event_json, received_at, now, replay_of))
        self._received_at = received_at
        self._now = now
        self._command_partitions = command_partitions
        self._index_partitions = index_partitions

    def records(self, fn: StartedFunction) -> list[EncodedRecord]:
        """The start command (encoded) and the cancel listeners of ``fn``'s run, as ``start_records`` gives them."""
        return self.all_records((fn,))

    def all_records(self, fns: Sequence[StartedFunction]) -> list[EncodedRecord]:
        """:meth:`records` of each function in turn, in one loop (a call per run cost a tenth of a run)."""
        codec, event, run_ids, command_partitions = self._codec, self.event, self.run_ids, self._command_partitions
        head, run_id_len, rest, fields = codec._head, codec._run_id_len, self._rest, codec._functions
        records: list[EncodedRecord] = []
        for fn in fns:
            fn_id = fn.id
            run_id = run_ids(fn_id)
            # Runs that share concurrency slots meet at one owner partition; others go by run id.
            owner_key = fn.owner_key(event)
            owner = partition_for(owner_key, command_partitions) if owner_key is not None else -1
            field = fields.get(fn_id) or codec.function_field(fn_id)
            records.append(("commands", run_id, RUN_COMMAND,
                            b"".join((head, run_id_len, run_id.encode(), field, rest)), owner))
            if fn.cancels:
                records += listener_records(fn, event, run_id, self._received_at, self._now, owner,
                                            self._index_partitions)
        return records
