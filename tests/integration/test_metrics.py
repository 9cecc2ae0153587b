"""Services expose Prometheus metrics, including consumer lag from librdkafka's statistics."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prometheus_client import REGISTRY

from pipeline.config import Settings
from pipeline.kafka.loop import ServiceLoop
from pipeline.kafka.passthrough import PassThrough
from pipeline.testing.helpers import await_records, create_topic, free_port, produce, unique_name

pytestmark = pytest.mark.integration


def test_loop_exports_throughput_dead_letters_and_lag(kafka_bootstrap: str) -> None:
    prefix = unique_name("m") + "."
    port = free_port()
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, instance_id="m", metrics_port=port)
    source, sink = f"{prefix}in", f"{prefix}out"
    for topic in (source, sink, settings.topic("dead-letter")):
        create_topic(kafka_bootstrap, topic)
    produce(kafka_bootstrap, source, [b"a", b"poison", b"b"])
    dead_before = REGISTRY.get_sample_value("pipeline_dead_letters_total",
                                            {"reason": "ValueError", "service": "passthrough"}) or 0.0
    loop = ServiceLoop(PassThrough(source, sink), settings, group_id=unique_name("g"))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        await_records(kafka_bootstrap, sink, 2, timeout=30)
        deadline = time.monotonic() + 30
        text = ""
        while f'pipeline_consumer_lag{{partition="0",service="passthrough",topic="{source}"}}' not in text:
            assert time.monotonic() < deadline, text[-2000:]
            time.sleep(0.5)
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        loop.stop()
        thread.join(30)
    assert f'pipeline_records_processed_total{{service="passthrough",topic="{source}"}} 3.0' in text
    assert f'pipeline_dead_letters_total{{reason="ValueError",service="passthrough"}} {dead_before + 1}' in text
    assert f'pipeline_consumer_lag{{partition="0",service="passthrough",topic="{source}"}} 0.0' in text
