"""The compiled Avro codecs write and read exactly what fastavro does, for every schema in the catalog."""

from __future__ import annotations

import random
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from pipeline.serde import Serde, SerdeError, default_catalog
from pipeline.serde.compiled import compile_encoder, read_long, zigzag
from pipeline.serde.decoders import compile_decoder, compile_projection

CATALOG = default_catalog()
SCHEMAS = sorted(CATALOG.current)


def _value(schema: Any, named: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A random value of ``schema`` (fastavro's parsed form), with the edge cases of each type."""
    if isinstance(schema, list):
        branch = rng.choice(schema)
        return _value(branch, named, rng, depth)
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(schema, dict) and "name" in schema:
        named.setdefault(schema["name"], schema)
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 63, 64, -64, -65, 2**31 - 1, -(2**31), rng.randint(-(2**31), 2**31 - 1)])
    if kind == "long":
        return rng.choice([0, -1, 63, 64, -65, 2**63 - 1, -(2**63), rng.randint(-(2**63), 2**63 - 1),
                           rng.randint(0, 2**45)])
    if kind == "string":
        return rng.choice(["", "a", "é€𝄞", "x" * rng.randint(0, 300), '{"data":{"k":1}}'])
    if kind == "bytes":
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 20)))
    if kind == "enum":
        return rng.choice(schema["symbols"])
    if kind == "array":
        return [_value(schema["items"], named, rng, depth + 1) for _ in range(rng.randint(0, 3 if depth < 3 else 0))]
    if kind == "map":
        return {f"k{i}": _value(schema["values"], named, rng, depth + 1) for i in range(rng.randint(0, 3))}
    if kind == "record":
        return {f["name"]: _value(f["type"], named, rng, depth + 1) for f in schema["fields"]}
    raise AssertionError(f"no generator for {kind}")


def _fastavro_bytes(parsed: Any, record: Any) -> bytes:
    buf = BytesIO()
    schemaless_writer(buf, parsed, record)
    return buf.getvalue()


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_catalog_schema_compiles_and_matches_fastavro(name: str) -> None:
    parsed = CATALOG.current[name].parsed
    encode, decode = compile_encoder(parsed), compile_decoder(parsed)
    assert encode is not None and decode is not None, f"{name} fell back to fastavro"
    rng = random.Random(name)
    for _ in range(300):
        record = _value(parsed, {}, rng)
        body = _fastavro_bytes(parsed, record)
        assert encode(record) == body
        decoded, end = decode(body, 0)
        assert end == len(body)
        assert decoded == schemaless_reader(BytesIO(body), parsed, None)


def test_missing_fields_take_their_defaults_as_fastavro_does() -> None:
    parsed = CATALOG.current["pipeline.RunCommand"].parsed
    record = {"kind": "cancel", "run_id": "r", "function_id": "f", "ts": 5}
    assert compile_encoder(parsed)(record) == _fastavro_bytes(parsed, record)  # type: ignore[misc]


@pytest.mark.parametrize("bad", [
    {"kind": "nope", "run_id": "r", "function_id": "f", "ts": 5},  # not an enum symbol
    {"kind": "start", "run_id": 7, "function_id": "f", "ts": 5},  # int for a string
    {"kind": "start", "run_id": "r", "function_id": "f", "ts": "5"},  # string for a long
    {"kind": "start", "function_id": "f", "ts": 5},  # a required field missing
    {"kind": "start", "run_id": "r", "function_id": "f", "ts": 5, "event": 3},  # wrong type in a union
])
def test_a_record_that_does_not_fit_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(SerdeError, match=r"does not fit schema pipeline\.RunCommand"):
        Serde().encode("pipeline.RunCommand", bad)


def test_corrupt_bodies_are_refused_not_misread() -> None:
    serde = Serde()
    good = serde.encode("pipeline.EventSeen", {"event_id": "e" * 40, "offset": 12, "first_seen": 99})
    for cut in range(11, len(good)):
        with pytest.raises(SerdeError, match=r"cannot decode pipeline\.EventSeen"):
            serde.decode(good[:cut])
    # a string length pointing past the end
    with pytest.raises(SerdeError):
        serde.decode(good[:10] + zigzag(1000) + b"abc")


def test_varints_round_trip() -> None:
    for n in [0, 1, -1, 63, -64, 64, -65, 300, -300, 2**31, 2**63 - 1, -(2**63)]:
        raw = zigzag(n)
        first = raw[0]
        if first < 0x80:
            assert (first >> 1) ^ -(first & 1) == n
        else:
            assert read_long(raw, 1, first) == (n, len(raw))


def test_serde_still_reads_an_older_writer_schema_through_fastavro() -> None:
    serde = Serde()
    olds = [e for e in CATALOG.by_fingerprint.values() if not e.current]
    if not olds:
        pytest.skip("no superseded schema in the catalog")
    old = olds[0]
    record = _value(old.parsed, {}, random.Random(1))
    payload = b"\xc3\x01" + old.fingerprint + _fastavro_bytes(old.parsed, record)
    name, decoded = serde.decode(payload)
    assert name == old.name
    assert set(CATALOG.current[old.name].parsed["fields"][0]) >= {"name"}
    assert set(decoded) == {f["name"] for f in CATALOG.current[old.name].parsed["fields"]}


@pytest.mark.parametrize("name", SCHEMAS)
def test_a_projection_reads_its_fields_as_the_full_decoder_does(name: str) -> None:
    """Any subset of a record's fields: the same values, and the whole body read (the others checked, not built)."""
    parsed = CATALOG.current[name].parsed
    decode = compile_decoder(parsed)
    assert decode is not None
    rng = random.Random(f"projection {name}")
    names = [f["name"] for f in parsed["fields"]]
    for _ in range(200):
        fields = tuple(rng.sample(names, rng.randint(0, len(names))))
        project = compile_projection(parsed, fields)
        assert project is not None, f"{name} {fields} fell back"
        body = _fastavro_bytes(parsed, _value(parsed, {}, rng))
        full, end = decode(body, 0)
        assert project(body, 0) == ({k: full[k] for k in fields}, end)


def test_a_projection_refuses_exactly_the_bodies_the_full_decoder_refuses() -> None:
    """Truncated at every byte, and each byte replaced by a few values: a record either decoder takes, the other
    takes too, so a reader that projects never keeps a record the full decoder would fail on later."""
    parsed = CATALOG.current["pipeline.RunState"].parsed
    decode, project = compile_decoder(parsed), compile_projection(parsed, ("run_id", "status", "version"))
    assert decode is not None and project is not None
    rng = random.Random(7)
    bodies = [_fastavro_bytes(parsed, _value(parsed, {}, rng)) for _ in range(20)]

    def refused(fn: Any, body: bytes) -> bool:
        try:
            fn(body, 0)
        except Exception:  # whatever the decoder raises on a corrupt body
            return True
        return False

    for body in bodies:
        variants = [body[:cut] for cut in range(len(body))]
        variants += [body[:i] + bytes((v,)) + body[i + 1:] for i in range(len(body)) for v in (0x00, 0x7F, 0x81, 0xFF)]
        for variant in variants:
            assert refused(decode, variant) == refused(project, variant), variant.hex()


def test_decode_fields_projects_current_records_and_resolves_older_ones() -> None:
    serde = Serde()
    state = _value(CATALOG.current["pipeline.RunState"].parsed, {}, random.Random(3))
    payload = serde.encode("pipeline.RunState", state)
    assert serde.decode_fields("pipeline.RunState", payload, ("status", "run_id")) == {
        "status": state["status"], "run_id": state["run_id"]}
    with pytest.raises(SerdeError, match=r"expected a pipeline\.RunCommand record"):
        serde.decode_fields("pipeline.RunCommand", payload, ("run_id",))
    with pytest.raises(SerdeError, match="cannot decode"):
        serde.decode_fields("pipeline.RunState", payload[:-3], ("run_id",))
    old = next(e for e in CATALOG.by_fingerprint.values() if e.name == "pipeline.RunState" and not e.current)
    body = b"\xc3\x01" + old.fingerprint + _fastavro_bytes(old.parsed, _value(old.parsed, {}, random.Random(4)))
    full = serde.decode_as("pipeline.RunState", body)  # the current schema's fields, defaults filled in
    assert serde.decode_fields("pipeline.RunState", body, ("run_id", "version")) == {
        "run_id": full["run_id"], "version": full["version"]}
