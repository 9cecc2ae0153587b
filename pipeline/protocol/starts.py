"""The start records of one event's runs, built for the matcher's hot path: the same records as
:func:`pipeline.protocol.commands.start_records`, with the start command already encoded.

Why: the matcher starts ~2.4 runs per event, and building and encoding each run's ``RunCommand`` field by field
was a third of its CPU. All the fields of a start command but two (its run id and function id) are the event's,
and an Avro record is its fields' encodings one after another, so here the fields an event's runs share are
encoded once per event, a function's id once per function, and a run costs its run id
(:class:`pipeline.protocol.ids.EventRunIds`) and one join of bytes. The bytes are exactly what
``Serde.encode(RUN_COMMAND, start_command(...))`` writes (``tests/unit/test_starts.py``), so readers see no change.

A run's cancel listeners (one per ``cancel`` rule, ~0.5 per event in the matcher bench) are joined the same way:
their run id, function id and trigger (event id, receive time) fields are the bytes already made for the start
command and the event, so a listener costs the encodings of its join key and its last four fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..serde import CANCEL_LISTENER, RUN_COMMAND, Serde, SerdeError
from .commands import StartedFunction, start_command
from .ids import ULID_LENGTH, EventRunIds
from .joins import listeners_for
from .keys import listener_record_key, partition_for

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
        # CancelListener: join_key, run_id, function_id, trigger_event_id, trigger_received_at, then the rest
        self._listener_head = serde.header(CANCEL_LISTENER)
        self._join_key = serde.fields_encoder(CANCEL_LISTENER, "join_key", "join_key")
        self._trigger = serde.fields_encoder(CANCEL_LISTENER, "trigger_event_id", "trigger_received_at")
        self._listener_rest = serde.fields_encoder(CANCEL_LISTENER, "expires_at")
        listener = {"join_key": "shop/cancel\x00data.id\x00\"7\"", "run_id": sample["run_id"],
                    "function_id": "app-fn", "trigger_event_id": "01KC", "trigger_received_at": 1765147000123,
                    "expires_at": 1765233400456, "residual": "x", "owner_partition": 3, "wait_step": None}
        if self.listener(listener, self.function_field("app-fn"), self.trigger(listener)) \
                != serde.encode(CANCEL_LISTENER, listener):
            raise SerdeError("CancelListener's fields no longer begin join_key, run_id, function_id, "
                             "trigger_event_id, trigger_received_at: pipeline/protocol/starts.py must follow the "
                             "schema")

    def trigger(self, listener: Mapping[str, Any]) -> bytes:
        """The encoded ``trigger_event_id`` and ``trigger_received_at`` fields (one event's, for all its runs)."""
        return self._trigger(listener)

    def listener(self, listener: Mapping[str, Any], function_field: bytes, trigger: bytes) -> bytes:
        """The encoded CancelListener ``listener`` whose ``function_id`` and trigger fields are already encoded
        (``function_field``: the start command's, the same Avro string)."""
        return b"".join((self._listener_head, self._join_key(listener), self._run_id_len,
                         listener["run_id"].encode(), function_field, trigger, self._listener_rest(listener)))

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

    __slots__ = ("_codec", "_command_partitions", "_index_partitions", "_now", "_received_at", "_rest", "_trigger",
                 "event", "run_ids")

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
        self._trigger: bytes | None = None  # the listeners' trigger fields, made at the first listener

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
                records += self._listeners(fn, run_id, field, owner)
        return records

    def _listeners(self, fn: StartedFunction, run_id: str, function_field: bytes, owner: int) -> list[EncodedRecord]:
        """The cancel listeners of ``fn``'s run, encoded (as :func:`~pipeline.protocol.commands.listener_records`
        gives them, the value already encoded); ``owner``: its run-commands partition, -1 by run id."""
        records: list[EncodedRecord] = []
        codec = self._codec
        for listener in listeners_for(fn, self.event, run_id, self._received_at, self._now):
            listener["owner_partition"] = owner
            trigger = self._trigger
            if trigger is None:
                trigger = self._trigger = codec.trigger(listener)
            key = listener["join_key"]
            records.append(("index", listener_record_key(key, run_id), CANCEL_LISTENER,
                            codec.listener(listener, function_field, trigger),
                            partition_for(key, self._index_partitions)))
        return records
