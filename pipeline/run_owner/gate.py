"""The watermark gate: a run does not pass time T until the cancel path has passed T.

"A cancel received before the run moved on always cancels it" needs more than a fast cancel
path: when the matcher or the canceller lags (a rebalance, a SIGKILL, load), a timer in the
owner would otherwise fire and move the run on while its cancel sits in Kafka.

The proof that the cancel path passed T comes from the broker, not from the services' word:

1. ``t0`` = now; the end offsets of ``events`` and ``system-events`` (every event received before
   ``t0`` lies below them);
2. the matcher's consumer group has *committed* at least those offsets, so every cancel signal
   those events caused is committed in ``cancel-index`` (the loop commits output and offsets in
   one transaction);
3. the end offsets of ``cancel-index``, then the canceller's group has committed past them, so every
   cancel command those signals caused is committed in ``run-commands``;
4. the end offsets of ``run-commands``: once the owner's own position passes them on a partition,
   it has applied every such cancel, and the runs of that partition waiting at points ``<= t0``
   may go on.

:class:`GateProber` threads run such rounds back to back while any run waits, several at once and out of
step, so that a run that starts waiting meets a round that begins soon after (a run waits for one whole
round that *began* after its point, so with one thread it waited 1.5 rounds on average); the owner's loop
thread releases runs (:class:`GateBook`). A partition that nobody consumes (a dead matcher not yet
replaced) stalls step 2 or 3: that is exactly when waiting is right. The wait is bounded
(``PIPELINE_GATE_MAX_WAIT_MS``); past it the run goes on with a warning and a metric.
Committed offsets are the consumer's positions, which step over transaction markers, so an idle
partition whose last record is a commit marker does not hold the gate (see ``kafka/loop.py``).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]  # not in its __all__

from ..config import Settings
from ..kafka import metrics
from ..kafka import topics as t
from ..kafka.client import admin_config
from .undo import UndoLog

log = logging.getLogger("pipeline.gate")

Round = tuple[int, dict[int, int]]  # (t0, run-commands partition -> end offset)


def _now() -> int:
    return time.time_ns() // 1_000_000


class GateProber:
    """Runs proof rounds against the broker while :attr:`wanted`; finished rounds queue up in :attr:`rounds`."""

    def __init__(self, servers: str, settings: Settings, *, poll_interval: float = 0.002, threads: int = 3) -> None:
        self.settings = settings
        self.admin = AdminClient(admin_config(servers))
        self.poll_interval = poll_interval
        prefix = settings.topic_prefix
        self.stages = [
            (f"{prefix}pipeline-matcher", [settings.topic(t.EVENTS), settings.topic(t.SYSTEM_EVENTS)]),
            (f"{prefix}pipeline-canceller", [settings.topic(t.CANCEL_INDEX)]),
        ]
        self.commands_topic = settings.topic(t.RUN_COMMANDS)
        self._wanted = threading.Event()
        self.rounds: deque[Round] = deque()
        self.last_t0 = 0
        self._partitions: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"gate-prober-{i}", daemon=True)
                         for i in range(threads)]

    @property
    def wanted(self) -> bool:
        return self._wanted.is_set()

    @wanted.setter
    def wanted(self, value: bool) -> None:
        """Runs wait (or no longer do): idle threads wake at once instead of at their next poll."""
        if value:
            self._wanted.set()
        else:
            self._wanted.clear()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        for thread in self._threads:
            thread.join(5)

    # -- one round -----------------------------------------------------------------------------------------

    def _tps(self, topics: list[str]) -> list[TopicPartition]:
        out: list[TopicPartition] = []
        for topic in topics:
            if topic not in self._partitions:
                meta = self.admin.list_topics(topic=topic, timeout=10).topics.get(topic)
                if meta is None or meta.error is not None:
                    raise KafkaException(f"topic {topic} is not there")
                self._partitions[topic] = sorted(meta.partitions)
            out.extend(TopicPartition(topic, p) for p in self._partitions[topic])
        return out

    def _ends(self, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in confluent-kafka
        futures = self.admin.list_offsets({tp: latest for tp in tps},
                                          isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=10)
        return {(tp.topic, tp.partition): fut.result().offset for tp, fut in futures.items()}

    def _committed(self, group: str, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
        futures = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)],
                                                         request_timeout=10)
        result = futures[group].result()
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}

    def _wait_committed(self, group: str, tps: list[TopicPartition], ends: dict[tuple[str, int], int]) -> bool:
        """Poll the group's committed offsets until they reach ``ends``; False if asked to stop."""
        todo = [tp for tp in tps if ends[(tp.topic, tp.partition)] > 0]
        while todo and not self._stop.is_set():
            committed = self._committed(group, todo)
            todo = [tp for tp in todo if committed.get((tp.topic, tp.partition), -1) < ends[(tp.topic, tp.partition)]]
            if todo:
                time.sleep(self.poll_interval)
        return not self._stop.is_set()

    def round(self) -> Round | None:
        """One proof round (blocking); None when stopped midway."""
        t0 = _now()
        for group, topics in self.stages:
            tps = self._tps(topics)
            if not self._wait_committed(group, tps, self._ends(tps)):
                return None
        commands = self._tps([self.commands_topic])
        ends = self._ends(commands)
        return t0, {p: ends[(topic, p)] for topic, p in ends}

    def _run(self, index: int) -> None:
        idle = True
        while not self._stop.is_set():
            if not self._wanted.is_set():
                idle = True
                self._wanted.wait(0.1)
                continue
            if idle and index:  # thread 0 starts a round at once, the others out of step behind it
                self._stop.wait(0.0015 * index)
            idle = False
            try:
                done = self.round()
            except Exception as exc:  # noqa: BLE001 - a broker hiccup: try again; the owner's max wait bounds the damage
                log.warning("gate round failed", extra={"error": str(exc)})
                self._stop.wait(0.2)
                continue
            if done is not None:
                self.rounds.append(done)  # deque.append is thread-safe; the book takes rounds in any order
                self.last_t0 = max(self.last_t0, done[0])
                metrics.GATE_LAG.set(max(0.0, (_now() - done[0]) / 1000))


class GateBook:
    """Runs waiting at the gate, per owner partition, released as proof rounds and the owner's position allow."""

    def __init__(self, max_wait_ms: int, undo: UndoLog | None = None) -> None:
        self.max_wait_ms = max_wait_ms
        self.undo = undo  # where a record's gate changes log their inverse (adds, releases)
        self.waiting: dict[int, list[tuple[int, str]]] = {}  # partition -> heap of (ready_at, run_id)
        self.passed: dict[int, int] = {}  # partition -> the latest t0 the owner has caught up with
        self._pending: list[Round] = []
        # each run's latest point: a run that left the gate another way (a wait answered) and came back at a
        # later point leaves a stale entry behind, which must not release it early
        self._points: dict[tuple[int, str], int] = {}

    def __len__(self) -> int:
        return sum(len(h) for h in self.waiting.values())

    def add(self, partition: int, ready_at: int, run_id: str) -> None:
        if self.undo is not None:
            self.undo.add(self._unadd, partition, (ready_at, run_id), self._points.get((partition, run_id)))
        heapq.heappush(self.waiting.setdefault(partition, []), (ready_at, run_id))
        self._points[(partition, run_id)] = ready_at

    def _unadd(self, partition: int, entry: tuple[int, str], point: int | None) -> None:
        heap = self.waiting.get(partition)
        if heap is not None:
            heap.remove(entry)
            heapq.heapify(heap)
        key = (partition, entry[1])
        if point is None:
            self._points.pop(key, None)
        else:
            self._points[key] = point

    def _readd(self, partition: int, ready_at: int, run_id: str) -> None:
        heapq.heappush(self.waiting.setdefault(partition, []), (ready_at, run_id))
        self._points[(partition, run_id)] = ready_at

    def drop_partition(self, partition: int) -> None:
        self.waiting.pop(partition, None)
        self.passed.pop(partition, None)
        self._points = {k: v for k, v in self._points.items() if k[0] != partition}

    def take_rounds(self, rounds: deque[Round]) -> None:
        while rounds:
            self._pending.append(rounds.popleft())

    def due(self, positions: dict[int, int], now: int) -> list[tuple[int, str, bool]]:
        """(partition, run id, timed out) of every run that may go on now."""
        keep = []
        for t0, ends in self._pending:
            done = True
            for p in self.waiting:
                if positions.get(p, -1) >= ends.get(p, 0):
                    if t0 > self.passed.get(p, 0):
                        self.passed[p] = t0
                else:
                    done = False
            if not done and now - t0 < self.max_wait_ms:
                keep.append((t0, ends))
        self._pending = keep
        out = []
        for p, heap in self.waiting.items():
            passed = self.passed.get(p, 0)
            while heap and (heap[0][0] <= passed or now - heap[0][0] >= self.max_wait_ms):
                ready_at, run_id = heapq.heappop(heap)
                if self._points.get((p, run_id)) != ready_at:
                    if self.undo is not None:
                        self.undo.add(heapq.heappush, heap, (ready_at, run_id))
                    continue  # stale: the run is back at a later point, with its own entry
                del self._points[(p, run_id)]
                if self.undo is not None:  # released, then the record failed: it waits again
                    self.undo.add(self._readd, p, ready_at, run_id)
                out.append((p, run_id, ready_at > passed))
        return out
