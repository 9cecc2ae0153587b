"""Run ids are ULIDs derived from (function id, event id): a replay never starts a run twice."""

from ulid import ULID

from pipeline.protocol.ids import derived_ulid, run_id_for


def test_run_id_is_deterministic_and_a_valid_ulid() -> None:
    a = run_id_for("app-fn", "01EVENT", 1732558407003)
    assert a == run_id_for("app-fn", "01EVENT", 1732558407003)
    assert ULID.from_str(a).milliseconds == 1732558407003


def test_run_id_differs_per_function_and_event() -> None:
    ids = {run_id_for(f, e, 5) for f in ("a-x", "a-y") for e in ("e1", "e2")}
    assert len(ids) == 4


def test_derived_ulid_clamps_time() -> None:
    assert ULID.from_str(derived_ulid(-5, "x")).milliseconds == 0


def test_derived_ulid_text_is_python_ulid_s_for_the_same_bits() -> None:
    """The C-built text equals python-ulid's rendering of the same 128 bits, edge times included."""
    import hashlib

    for ts in (0, 1, 1732558407003, (1 << 48) - 1):
        for parts in (("run", "app-fn", "01EVENT"), ("x",), ("", "")):
            digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=10).digest()
            assert derived_ulid(ts, *parts) == str(ULID.from_bytes(ts.to_bytes(6, "big") + digest))
