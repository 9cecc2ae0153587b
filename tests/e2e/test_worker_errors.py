"""A handler that raises SystemExit, CancelledError or KeyboardInterrupt fails its attempt like any error: the
run retries, then fails with ``inngest/function.failed``, and the worker goes on serving and committing."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

import pipeline
from pipeline.kafka import topics as t
from pipeline.kafka.client import consumer_config
from pipeline.testing.stack import Stack

pytestmark = pytest.mark.integration

app = pipeline.Inngest(app_id="e2e-bx")
MESSAGE = 'it\'s "bye", {x} \\ %r'
RAISE: dict[str, type[BaseException]] = {"SystemExit": SystemExit, "CancelledError": asyncio.CancelledError,
                                         "KeyboardInterrupt": KeyboardInterrupt}


@app.create_function(fn_id="sync", retries=1, trigger=pipeline.TriggerEvent(event="test/bx.sync"))
def sync_raiser(ctx: pipeline.ContextSync) -> str:
    if ctx.event.data.get("ok"):
        return "fine"
    raise RAISE[ctx.event.data["kind"]](MESSAGE)


@app.create_function(fn_id="async", retries=1, trigger=pipeline.TriggerEvent(event="test/bx.async"))
async def async_raiser(ctx: pipeline.Context) -> str:
    await asyncio.sleep(0)
    if ctx.event.data.get("ok"):
        return "fine"
    raise RAISE[ctx.event.data["kind"]](MESSAGE)


def _last_records(stack: Stack, topic: str) -> dict[int, int]:
    """Per partition, the offset after the topic's last record (transaction markers take offsets too, so the
    high watermark is not it)."""
    consumer = Consumer(consumer_config(stack.bootstrap, None, **{"enable.partition.eof": True}))
    parts = list(range(stack.settings.partitions))
    consumer.assign([TopicPartition(topic, p, -2) for p in parts])
    after: dict[int, int] = dict.fromkeys(parts, 0)
    at_end: set[int] = set()
    deadline = time.monotonic() + 15
    try:
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            partition, offset = msg.partition(), msg.offset()
            err = msg.error()
            assert partition is not None
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(partition)
            elif offset is not None:
                after[partition] = offset + 1
    finally:
        consumer.close()
    return after


def _committed_everything(stack: Stack) -> bool:
    """The worker's group has committed every invocation (it did not stop committing a partition)."""
    topic = stack.settings.topic(t.INVOCATIONS)
    after = _last_records(stack, topic)
    consumer = Consumer(consumer_config(stack.bootstrap, f"{stack.settings.topic_prefix}pipeline-worker"))
    try:
        committed = {tp.partition: tp.offset for tp in consumer.committed(
            [TopicPartition(topic, p) for p in after], timeout=10)}
    finally:
        consumer.close()
    return all(committed[p] >= last for p, last in after.items() if last > 0)


@pytest.mark.parametrize(("event", "kind"), [("test/bx.sync", "SystemExit"), ("test/bx.async", "CancelledError"),
                                             ("test/bx.async", "SystemExit")])
def test_a_base_exception_from_a_handler_fails_the_attempt_and_the_worker_goes_on(
        kafka_bootstrap: str, event: str, kind: str) -> None:
    with Stack(app, kafka_bootstrap) as stack:
        stack.send(event, {"kind": kind}, id="bx-bad")
        failed = stack.wait_run(lambda r: r["event_id"] == "bx-bad" and r["status"] == "Failed", timeout=30,
                                what=f"the run whose handler raised {kind} to fail")
        error = json.loads(failed["error"])
        assert (error["name"], error["message"]) == (kind, MESSAGE)
        states = [s for s in stack.runs.records if s and s["run_id"] == failed["run_id"]]  # type: ignore[union-attr]
        retried = [s for s in states if s["status"] == "Running" and s["attempt"] == 1]
        assert retried and json.loads(retried[0]["error"])["name"] == kind, "retries=1: a second attempt, then Failed"
        (notice,) = stack.wait_system_event("inngest/function.failed",
                                            lambda e: e["data"]["run_id"] == failed["run_id"])
        assert notice["data"]["error"]["name"] == kind

        stack.send(event, {"ok": True}, id="bx-ok")  # the same worker still runs handlers
        done = stack.wait_run(lambda r: r["event_id"] == "bx-ok" and r["status"] == "Completed", timeout=30,
                              what="a later run to complete on the same worker")
        assert json.loads(done["output"]) == "fine"
        deadline = time.monotonic() + 15
        while not _committed_everything(stack):
            assert time.monotonic() < deadline, "the worker stopped committing invocations"
            time.sleep(0.2)
