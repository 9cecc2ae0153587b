"""Each TypedDict of pipeline.protocol.records matches its Avro schema in schemas/, field for field.

A schema that gains, loses or changes the nullability of a field without the contract following fails here,
so the types that mypy checks the services against are the records that really travel.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from pipeline.protocol import records
from pipeline.serde import catalog

AVRO_TO_PY: dict[str, type] = {"string": str, "long": int, "int": int, "boolean": bool, "double": float,
                                "bytes": bytes}


def _current_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(Path(catalog.schemas_dir()).glob("*.avsc")):
        raw = json.loads(path.read_text())
        out[f"{raw.get('namespace', '')}.{raw['name']}"] = raw
    return out


def _accepts(hint: Any, avro: Any) -> bool:
    """Whether a Python type hint matches an Avro field type (record and enum types are checked by name)."""
    if isinstance(avro, list):  # a union: ["null", T]
        args = set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}
        non_null = [a for a in avro if a != "null"]
        return ("null" in avro) == (type(None) in args) and len(non_null) == 1 and any(
            _accepts(a, non_null[0]) for a in args if a is not type(None))
    if isinstance(avro, dict):
        if avro["type"] == "array":
            return typing.get_origin(hint) is list and _accepts(typing.get_args(hint)[0], avro["items"])
        if avro["type"] == "enum":
            return typing.get_origin(hint) is typing.Literal and set(typing.get_args(hint)) == set(avro["symbols"])
        if avro["type"] == "record":
            return _fields_match(hint, avro) == []
    if isinstance(avro, str):
        return hint is AVRO_TO_PY.get(avro)
    return False


def _fields_match(cls: Any, schema: dict[str, Any]) -> list[str]:
    hints = get_type_hints(cls)
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    problems = [f"{name}: in the schema, not in {cls.__name__}" for name in fields.keys() - hints.keys()]
    problems += [f"{name}: in {cls.__name__}, not in the schema" for name in hints.keys() - fields.keys()]
    problems += [f"{name}: {hints[name]} does not match Avro {json.dumps(fields[name])}"
                 for name in fields.keys() & hints.keys() if not _accepts(hints[name], fields[name])]
    return problems


def test_every_schema_has_a_typed_dict() -> None:
    assert set(_current_schemas()) == set(records.BY_SCHEMA)


@pytest.mark.parametrize("name", sorted(records.BY_SCHEMA))
def test_typed_dict_matches_its_schema(name: str) -> None:
    assert _fields_match(records.BY_SCHEMA[name], _current_schemas()[name]) == []


def test_a_drifted_field_is_caught() -> None:
    """The check can fail: a schema with a field the TypedDict lacks, or another type, is reported."""
    schema = _current_schemas()["pipeline.CancelSignal"]
    drifted = dict(schema, fields=[*schema["fields"], {"name": "extra", "type": "string"}])
    assert _fields_match(records.CancelSignal, drifted) == ["extra: in the schema, not in CancelSignal"]
    retyped = dict(schema, fields=[dict(f, type=["null", "long"]) if f["name"] == "received_at" else f
                                   for f in schema["fields"]])
    assert len(_fields_match(records.CancelSignal, retyped)) == 1
