"""The cancel join without a broker: listener registration, signal keys, and the index's match rule."""

from __future__ import annotations

import json

import pipeline
from pipeline.canceller.index import Listener, Signal
from pipeline.protocol.joins import listeners_for, signal_keys, signal_routes
from pipeline.protocol.keys import join_key, partition_for

from .fakes import cancel_index

app = pipeline.Inngest(app_id="shop")


@app.create_function(fn_id="import", trigger=pipeline.TriggerEvent(event="import/requested"), cancel=[
    pipeline.Cancel(event="import/cancelled", if_exp="async.data.importId == event.data.importId"),
    pipeline.Cancel(event="import/aborted", match="data.importId"),
    pipeline.Cancel(event="user/deleted", if_exp="async.data.userId == event.data.userId && async.data.hard == true"),
    pipeline.Cancel(event="all/stop"),
    pipeline.Cancel(event="region/closed", if_exp="async.data.size > event.data.size"),
])
def _import(ctx: pipeline.Context) -> None:
    return None


FN = app.functions[0]
EVENT = {"id": "E1", "name": "import/requested", "data": {"importId": "abc", "userId": 7, "size": 3}, "user": {},
         "ts": 1}


def test_listeners_carry_join_keys_and_residuals() -> None:
    listeners = {lst["join_key"]: lst for lst in listeners_for(FN, EVENT, "R1", received_at=100, queued_at=200)}
    assert set(listeners) == {
        join_key("import/cancelled", "data.importId", "abc"),
        join_key("import/aborted", "data.importId", "abc"),
        join_key("user/deleted", "data.userId", 7),
        join_key("all/stop"),
        join_key("region/closed"),
    }
    assert listeners[join_key("import/cancelled", "data.importId", "abc")]["residual"] is None
    assert listeners[join_key("user/deleted", "data.userId", 7)]["residual"] == \
        "async.data.userId == 7 && async.data.hard == true"
    assert listeners[join_key("region/closed")]["residual"] == "async.data.size > 3"
    assert listeners[join_key("all/stop")]["residual"] is None
    only = listeners[join_key("import/cancelled", "data.importId", "abc")]
    assert only["expires_at"] == 200 + 365 * 24 * 3600 * 1000
    assert (only["trigger_event_id"], only["trigger_received_at"], only["run_id"]) == ("E1", 100, "R1")


def test_a_false_residual_registers_nothing() -> None:
    ev = {**EVENT, "data": {}}  # no importId / userId / size: those conditions can never hold
    keys = {lst["join_key"] for lst in listeners_for(FN, ev, "R1", 100, 200)}
    assert keys == {join_key("all/stop")}


def test_signal_keys_use_only_the_paths_listeners_use() -> None:
    routes = signal_routes([FN])
    assert routes["import/cancelled"].paths == ("data.importId",)
    incoming = {"id": "C1", "name": "import/cancelled", "data": {"importId": "abc", "other": 1}}
    assert signal_keys(routes["import/cancelled"], incoming) == [join_key("import/cancelled", "data.importId", "abc")]
    assert signal_keys(routes["import/cancelled"], {"id": "C2", "data": {}}) == []
    assert signal_keys(routes["all/stop"], {"id": "C3", "data": {}}) == [join_key("all/stop")]


def test_join_key_normalizes_numbers_so_equal_values_meet() -> None:
    assert join_key("e", "data.n", 1) == join_key("e", "data.n", 1.0)
    assert join_key("e", "data.n", "1") != join_key("e", "data.n", 1)
    assert partition_for(join_key("e", "data.n", 1), 12) == partition_for(join_key("e", "data.n", 1.0), 12)


def _listener(run: str, received: int = 100, expires: int = 10_000, residual: str | None = None) -> Listener:
    return Listener(run, "shop-import", f"trigger-{run}", received, expires, residual)


def _signal(event_id: str, received: int, data: dict | None = None) -> Signal:
    return Signal(event_id, received, json.dumps({"id": event_id, "name": "x", "data": data or {}}))


def test_signal_after_listener_cancels_and_before_does_not() -> None:
    index = cancel_index(60_000)
    index.add_listener("k", _listener("R1", received=100))
    assert [m.run_id for m in index.add_signal("k", _signal("S1", 150))] == ["R1"]
    assert index.add_signal("k", _signal("S0", 50)) == []


def test_signal_received_before_the_trigger_never_cancels() -> None:
    index = cancel_index(60_000)
    index.add_listener("k", _listener("R1", received=100))
    assert index.add_signal("k", _signal("S0", 99)) == []


def test_listener_registered_after_its_signal_is_still_cancelled() -> None:
    index = cancel_index(60_000)
    assert index.add_signal("k", _signal("S1", 150)) == []  # nobody listens yet
    matches = index.add_listener("k", _listener("R1", received=100))
    assert [(m.run_id, m.event_id) for m in matches] == [("R1", "S1")]
    # but an older signal does not cancel a newer run
    assert index.add_listener("k", _listener("R2", received=200)) == []


def test_own_triggering_event_never_cancels_its_run() -> None:
    index = cancel_index(60_000)
    index.add_listener("k", _listener("R1", received=100))
    assert index.add_signal("k", _signal("trigger-R1", 100)) == []


def test_expired_listener_is_not_cancelled_and_is_swept() -> None:
    index = cancel_index(1_000)
    index.add_listener("k", _listener("R1", received=100, expires=500))
    assert index.add_signal("k", _signal("S1", 600)) == []
    swept = list(index.expired(now_ms=5_000))
    assert ("listener", "k", "R1") in swept and ("signal", "k", "S1") in swept
    assert index.listener_count == 0 and index.signal_count == 0


def test_residual_is_checked_for_candidates() -> None:
    index = cancel_index(60_000)
    index.add_listener("k", _listener("R1", residual="async.data.size > 3"))
    assert index.add_signal("k", _signal("S1", 200, {"size": 2})) == []
    assert [m.run_id for m in index.add_signal("k", _signal("S2", 201, {"size": 4.5}))] == ["R1"]


def test_remove_listener_and_replay_without_matching() -> None:
    index = cancel_index(60_000)
    index.add_signal("k", _signal("S1", 150), match=False)
    assert index.add_listener("k", _listener("R1"), match=False) == []
    index.remove_listener("k", "R1")
    assert index.listener_count == 0 and index.listeners_of("k") == []


def test_a_matched_listener_is_removed_with_its_expiry_entry_without_a_read() -> None:
    """The canceller removes a matched listener with the expiry the match carries: both of its keys go, so the
    expiry sweep later finds nothing of it, and the count is right."""
    index = cancel_index(60_000)
    index.add_listener("k", _listener("R1", expires=5_000))
    index.add_listener("k", _listener("R2", received=500, expires=6_000))
    [match] = index.add_signal("k", _signal("S1", 200))
    assert (match.run_id, match.expires_at) == ("R1", 5_000)
    index.remove_listener(match.join_key, match.ident, match.expires_at)
    index.commit(None)
    assert index.listener_count == 1 and [lst.run_id for lst in index.listeners_of("k")] == ["R2"]
    swept = [(kind, ident) for kind, _, ident in index.expired(10_000) if kind == "listener"]
    assert swept == [("listener", "R2")]


def test_plain_join_fast_path_agrees_with_the_residual_path() -> None:
    """The one-lookup key for ``async.P == event.Q`` must equal what partial evaluation gives."""
    from dataclasses import replace

    for entry in FN.cancels:
        slow = replace(entry, event_path=None)
        for data in ({"importId": "abc"}, {"importId": 7}, {"importId": 7.0}, {"importId": None}, {"importId": True},
                     {"importId": {"nested": 1}}, {}, {"importId": "x", "userId": 3, "size": 1}):
            ev = {**EVENT, "data": data}
            fast_fn = replace(FN, cancels=(entry,))
            slow_fn = replace(FN, cancels=(slow,))
            assert listeners_for(fast_fn, ev, "R", 1, 2) == listeners_for(slow_fn, ev, "R", 1, 2), (entry.spec, data)
    assert FN.cancels[0].event_path == "data.importId" and FN.cancels[1].event_path == "data.importId"
    assert FN.cancels[2].event_path is None  # has a second conjunct
