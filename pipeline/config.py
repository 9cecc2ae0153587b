"""Settings from the environment (``PIPELINE_*``), with pydantic-settings.

One object carries everything a service needs to reach Kafka and name its topics, so
services, CLI and tests agree on names without passing a dozen arguments around.
"""

from __future__ import annotations

import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to ``PIPELINE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore")

    bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset means the embedded dev broker"
    )
    topic_prefix: str = Field(default="", description="prefix for every topic name, e.g. 'staging.'")
    partitions: int = Field(default=3, ge=1, description="partitions of the keyed topics when created")
    replication_factor: int = Field(default=1, ge=1)
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="stable and unique per instance: names the transactional.id and the static group member, so a "
        "restarted instance fences its previous self and takes its partitions back. `pipeline run`/`dev` default "
        "to the host name plus the lowest free slot on the host (pipeline.instance)")
    static_membership: bool = Field(
        default=True, description="join consumer groups as a static member named by the instance id: a restarted "
        "instance takes its partitions back at once; one that stops for good hands them over after the session "
        "timeout (6 s)")
    exactly_once: bool = Field(default=True, description="Kafka transactions; false = at-least-once")
    event_key: str | None = Field(default=None, description="key required in POST /e/{key}")
    signing_key: str | None = Field(default=None, description="Bearer key for the run and cancellation APIs")
    max_event_bytes: int = Field(default=512 * 1024, description="larger events are refused / dead-lettered")
    max_output_bytes: int = Field(
        default=1_000_000, description="largest record a service writes (the broker's default limit is ~1 MiB)")
    cancel_signal_window_ms: int = Field(
        default=10 * 60 * 1000, description="how long the canceller keeps a signal for late listeners"
    )
    event_dedup_window_ms: int = Field(
        default=24 * 3600 * 1000, ge=0, description="an event whose id was received within this window before "
        "starts nothing (Inngest's 24 h event-id deduplication); 0 turns it off")
    idempotency_window_ms: int = Field(
        default=24 * 3600 * 1000, ge=1000, description="a function's idempotency key starts at most one run per "
        "value in this window (Inngest's 24 h), counted in the broker's receive time; settable for tests")
    metrics_port: int | None = Field(default=None, description="Prometheus /metrics port; unset = none")
    health_port: int | None = Field(
        default=None, description="`pipeline run`: serve /healthz, /readyz and /metrics on this port; unset = none")
    batch_size: int = Field(default=500, ge=1, description="records consumed per batch")
    worker_concurrency: int = Field(
        default=200, ge=1, description="invocations one worker process runs at once (threads for sync handlers, "
        "tasks on one event loop for async ones)")
    gate_max_wait_ms: int = Field(
        default=60_000, ge=0, description="longest a run with cancel rules waits for the cancel path to pass its "
        "point before it goes on anyway (0 turns the gate off)")
    functions_apply_timeout_ms: int = Field(
        default=30_000, ge=0, description="longest a sync (POST /fn/register) or a learned wait name waits for every "
        "matcher to prove it applied the functions topic; past it the sync answers 503 and the wait is a failed "
        "attempt")
    offset_commit_interval_ms: int = Field(
        default=20, ge=1, description="how soon a service commits the offsets of records that produced no output; "
        "the watermark gate waits for those commits")
    commit_interval_ms: int = Field(
        default=100, ge=0, description="how long a service's transaction may stay open across batches while its "
        "input keeps coming in full batches (Kafka Streams' commit.interval.ms). A batch that is not full (the "
        "service caught up), an urgent record (a cancel), a rebalance and a stop commit at once; 0 commits every "
        "batch")
    stall_timeout_ms: int = Field(
        default=30_000, ge=0, description="`pipeline run`/`dev` exit with code 70 when a service loop makes no "
        "progress for this long (a Kafka call hung past its deadline); 0 turns the watchdog off")
    state_dir: str | None = Field(
        default=None, description="where services keep their state stores (RocksDB, one per service group, instance "
        "and partition; see pipeline.kafka.store); unset = `state` under $PIPELINE_HOME (~/.cache/pipeline)")
    schema_registry_url: str | None = Field(
        default=None, description="a Confluent-compatible Schema Registry (comma-separated URLs; user:password@ "
        "for basic auth): Avro records in Confluent's wire format (00 + schema id) on the events topic and on "
        "sources' topics are decoded through it; unset = such records are dead-lettered as undecodable")
    log_level: str = "INFO"

    def topic(self, name: str) -> str:
        """The full topic name with the configured prefix."""
        return f"{self.topic_prefix}{name}"
