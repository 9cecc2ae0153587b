"""The source service: records of users' own topics in, events out, exactly once.

It runs on the shared loop (:class:`pipeline.kafka.loop.ServiceLoop`), so each source record's event commits in
one transaction with the record's offset: a record becomes at most one event, also across a SIGKILL, and the
event id comes from the record (see :mod:`pipeline.sdk.sources`), so even a replay of the source topic starts
nothing twice. A record whose mapping fails is dead-lettered with the CEL error; its neighbours go on. Lag,
health and dead letters show as for every service (group ``pipeline-source``).
"""

from __future__ import annotations

from collections import defaultdict

from confluent_kafka import Message

from ..config import Settings
from ..kafka import topics as t
from ..kafka.emitter import Emitter
from ..kafka.processor import Processor, override
from ..sdk.sources import Source
from ..serde import EVENT
from ..serde.registry import confluent_reader
from .mapping import RecordView, SourceMapping


class Sources(Processor):
    """Every source of the app, one consumer group; several sources may read one topic."""

    name = "source"

    def __init__(self, sources: list[Source], settings: Settings) -> None:
        if not sources:
            raise ValueError("no sources to run: declare them with client.create_source(...)")
        self.events_topic = settings.topic(t.EVENTS)
        self.by_topic: dict[str, list[SourceMapping]] = defaultdict(list)
        confluent = confluent_reader(settings)  # waits out a registry outage: a good record is never dead-lettered
        for source in sources:
            self.by_topic[source.topic].append(SourceMapping(source, confluent))
        self.copied = 0
        self.skipped = 0

    @override
    def topics(self) -> list[str]:
        return sorted(self.by_topic)

    @override
    def process(self, msg: Message, out: Emitter) -> None:
        topic, p, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or p is None or offset is None:
            raise ValueError("not a consumed record")
        view = RecordView(topic=topic, partition=p, offset=offset, timestamp=msg.timestamp()[1], key=msg.key(),
                          value=msg.value(), headers=msg.headers() or [])
        events = [event for mapping in self.by_topic.get(topic, ()) if (event := mapping.event(view)) is not None]
        for event in events:  # all mapped before any is sent: a failing mapping sends none of them
            out.send(self.events_topic, event["id"], EVENT, event)
        self.copied += len(events)
        self.skipped += not events
