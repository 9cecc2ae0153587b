"""The lookahead backlog (pure): urgent records jump the backlog, never past a record of their own key, and the
positions reported as processed never pass a record still waiting."""

from __future__ import annotations

from typing import Any

from pipeline.kafka.lookahead import Lookahead

from .fakes import FakeMessage


def Msg(partition: int, offset: int, key: str, urgent: bool = False, topic: str = "t") -> FakeMessage:
    return FakeMessage(topic_=topic, partition_=partition, offset_=offset, key_=key.encode(), urgent=urgent)


def urgent(msg: Any) -> bool:
    return msg.urgent


def test_an_urgent_record_behind_a_burst_is_processed_first_and_then_only_counted() -> None:
    la = Lookahead(limit=100)
    burst = [Msg(0, i, f"run-{i}") for i in range(50)]
    cancel = Msg(0, 50, "sleeper", urgent=True)
    assert la.add([*burst, cancel], urgent) == [cancel]
    taken, done = la.take(100)
    assert taken == [*burst, cancel] and done == {id(cancel)}  # in order; the cancel's offset still counted


def test_an_urgent_record_never_overtakes_an_unprocessed_record_of_its_key() -> None:
    la = Lookahead(limit=100)
    start = Msg(0, 0, "run-x")
    cancel = Msg(0, 1, "run-x", urgent=True)  # the cancel of a run whose start is still in the backlog
    other = Msg(0, 2, "run-y", urgent=True)
    assert la.add([start, cancel, other], urgent) == [other]
    taken, done = la.take(10)
    assert taken == [start, cancel, other] and done == {id(other)}
    # once the key's earlier records are taken, a new urgent record of that key may jump again
    again = Msg(0, 3, "run-x", urgent=True)
    assert la.add([Msg(0, 4, "z")], urgent) == []
    assert la.add([again], urgent) == [again]


def test_processed_positions_stop_at_the_first_record_not_processed() -> None:
    la = Lookahead(limit=100)
    la.add([Msg(0, 10, "a"), Msg(0, 11, "b", urgent=True), Msg(1, 5, "c", urgent=True)], urgent)
    assert la.first_offsets(unprocessed=True) == {("t", 0): 10}  # partition 1 holds only a processed record
    assert la.first_offsets() == {("t", 0): 10, ("t", 1): 5}  # nothing committed past any record held


def test_taking_in_batches_keeps_order_and_room_is_the_limit_left() -> None:
    la = Lookahead(limit=10)
    msgs = [Msg(p, o, f"k{p}{o}") for o in range(4) for p in (0, 1)]
    la.add(msgs, urgent)
    assert la.room() == 2
    first, _ = la.take(3)
    second, _ = la.take(10)
    assert first + second == msgs and la.room() == 10


def test_revoked_partitions_leave_the_backlog_and_marks_of_the_rest_stay() -> None:
    la = Lookahead(limit=100)
    keep_urgent = Msg(1, 0, "k", urgent=True)
    la.add([Msg(0, 0, "a"), Msg(0, 1, "b", urgent=True), Msg(1, 1, "x"), keep_urgent], urgent)
    la.drop({("t", 0)})
    taken, done = la.take(10)
    assert [m.partition() for m in taken] == [1, 1] and done == {id(keep_urgent)}


def test_a_hook_that_cannot_read_a_record_leaves_it_in_order() -> None:
    def broken(msg: Any) -> bool:
        raise ValueError("poison")

    la = Lookahead(limit=10)
    poison = Msg(0, 0, "p")
    assert la.add([poison], broken) == []
    assert la.take(10) == ([poison], set())


def _walked_first_offsets(la: Lookahead, unprocessed: bool) -> dict[tuple[str, int], int]:
    """first_offsets by a walk of the whole backlog (what it did before it learned to stop early)."""
    first: dict[tuple[str, int], int] = {}
    for m in la.backlog:
        if not (unprocessed and (m.topic(), m.partition(), m.offset()) in la._early):
            first.setdefault((m.topic(), m.partition()), m.offset())
    return first


def test_first_offsets_stops_early_and_still_matches_a_whole_walk() -> None:
    import random

    rng = random.Random(7)
    la = Lookahead(limit=400)
    offsets = {p: 0 for p in range(4)}
    for _ in range(300):
        op = rng.random()
        if op < 0.6 and la.room() > 0:
            batch = []
            for _ in range(rng.randint(1, 20)):
                p = rng.randrange(4)
                batch.append(Msg(p, offsets[p], str(rng.randrange(6)), urgent=rng.random() < 0.2))
                offsets[p] += 1
            la.add(batch, urgent)
        elif op < 0.95:
            la.take(rng.randint(1, 30))
        else:
            la.drop({("t", rng.randrange(4))})
        for unprocessed in (False, True):
            assert la.first_offsets(unprocessed=unprocessed) == _walked_first_offsets(la, unprocessed)


def test_the_bookkeeping_drains_to_nothing_across_partial_takes_and_revocations() -> None:
    """Per-key and per-partition counts are kept by hand (no Counter defaults): a take split across batches,
    urgent records of several partitions and a revocation in between leave no stale count behind, and a key
    whose records were all taken may jump again."""
    la = Lookahead(limit=100)
    msgs = [Msg(i % 3, i, f"k{i % 5}", urgent=i % 7 == 0) for i in range(40)]
    early = la.add(msgs, urgent)
    # urgent: 0, 7, 14, 21, 28, 35; 21, 28 and 35 have an earlier record of their partition and key (6, 13, 5)
    assert [m.offset() for m in early] == [0, 7, 14]
    taken, done = la.take(13)
    assert taken == msgs[:13] and done == {id(m) for m in early if m.offset() < 13}
    la.drop({("t", 2)})
    rest, _ = la.take(100)
    assert rest == [m for m in msgs[13:] if m.partition() != 2]
    assert not la._pending and not la._in_order and not la._early and not la._early_parts
    assert la.first_offsets() == {} and la.first_offsets(unprocessed=True) == {}
    assert la.add([Msg(0, 40, "k0", urgent=True)], urgent) != []
