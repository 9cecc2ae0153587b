"""The count-down of a request's delivery reports (pure logic: the reports are called as the producer's poll thread
calls them, without a broker): the request wakes once, when the last report is in or at the first failure."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pipeline.api.edge import ApiError
from pipeline.api.writer import _Batch


class Delivered:
    """What a delivery report's message answers."""

    def __init__(self, partition: int, offset: int) -> None:
        self._at = (partition, offset)

    def partition(self) -> int:
        return self._at[0]

    def offset(self) -> int:
        return self._at[1]


def settle(n: int, reports: list[tuple[str, int, Any]]) -> tuple[_Batch, BaseException | None]:
    """A batch of ``n`` whose reports are called on another thread, in order; its outcome once settled."""

    async def run() -> tuple[_Batch, BaseException | None]:
        batch = _Batch(asyncio.get_running_loop(), n)

        def poll_thread() -> None:
            for kind, i, err in reports:
                if kind == "report":
                    batch.report(i, err, Delivered(i % 3, 100 + i))  # type: ignore[arg-type]
                else:
                    batch.ack(err, Delivered(0, 0))  # type: ignore[arg-type]

        threading.Thread(target=poll_thread).start()
        try:
            await asyncio.wait_for(batch.future, 5)
        except ApiError as exc:
            return batch, exc
        return batch, None

    return asyncio.run(run())


def test_positions_are_kept_in_record_order_whatever_order_the_reports_come_in() -> None:
    batch, failure = settle(3, [("report", 2, None), ("report", 0, None), ("report", 1, None)])
    assert failure is None and batch.positions == [(0, 100), (1, 101), (2, 102)]


def test_acks_without_positions_settle_once_the_last_is_in() -> None:
    async def run() -> None:
        batch = _Batch(asyncio.get_running_loop(), 3)
        batch.ack(None, Delivered(0, 0))  # type: ignore[arg-type]
        batch.ack(None, Delivered(0, 1))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert not batch.future.done()
        batch.ack(None, Delivered(0, 2))  # type: ignore[arg-type]
        await asyncio.wait_for(batch.future, 5)

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["report", "ack"])
def test_the_first_failed_report_settles_the_batch_with_a_503(kind: str) -> None:
    _, failure = settle(3, [(kind, 0, None), (kind, 1, "broker says no"), (kind, 2, None)])
    assert isinstance(failure, ApiError) and failure.status == 503 and "broker says no" in failure.message
