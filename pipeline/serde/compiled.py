"""Avro binary encoders and decoders compiled to Python source, one per schema, for the hot paths.

Why: every record a service reads or writes goes through Avro, and fastavro's ``schemaless_writer`` /
``schemaless_reader`` spend most of their ~8 µs per call on per-call set-up and generic dispatch on the
schema, not on the bytes. The matcher writes 2-3 records per event, so that set-up was the largest single
cost of an event. A function generated once per schema, with the schema's shape unrolled into straight-line
code, writes the same bytes in a third of the time (``tests/unit/test_serde_compiled.py`` holds it byte for
byte to fastavro, for every schema in the catalog, on generated records).

The compiled codecs cover what the catalog's schemas use: records (nested and named), arrays, maps, enums,
unions of ``null`` and one other type, and the primitives. A schema with anything else (a wider union, a
recursive type, fixed, logical types) gets ``None`` here and stays on fastavro. This module holds the shared code
generator and the encoders; the decoders, built with the same generator, are :mod:`pipeline.serde.decoders`.

Errors follow fastavro's contract for the callers: the encoder raises ``ValueError``, ``TypeError``,
``KeyError`` or ``AttributeError`` on a record that does not fit; the decoder raises on a truncated or corrupt
body. :class:`pipeline.serde.avro.Serde` turns both into ``SerdeError``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from typing import Any

Encoder = Callable[[Mapping[str, Any]], bytes]
Decoder = Callable[[bytes, int], tuple[dict[str, Any], int]]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "string", "bytes"})
_SMALL = tuple(bytes(((n << 1) ^ (n >> 63),)) for n in range(-64, 64))  # zig-zag varints of -64..63: one byte


# The bytes of a varint after its first (which had the continuation bit): at most 9 more, as read_long allows
_VARINT_REST = re.compile(rb"[\x80-\xff]{0,8}[\x00-\x7f]").match


class Unsupported(Exception):
    """The schema uses something the compiler does not cover: the caller keeps fastavro for it."""


# Varints seen lately, by value: a batch's records repeat the same timestamps (the time a batch is processed,
# events received in the same millisecond) and lengths, and a dict lookup is cheaper than building one.
_SEEN: dict[int, bytes] = {}
_SEEN_MAX = 8192
# The first two bytes of every varint of 14 bits or more, by its low 14 bits (32 KiB): a timestamp or an offset is
# two bytes from here and the varint of its high bits, which many values share (a new one every 8 s of timestamps)
_LOW14 = b"".join(bytes(((k & 0x7F) | 0x80, ((k >> 7) & 0x7F) | 0x80)) for k in range(1 << 14))
_HIGH: dict[int, bytes] = {}


def _varint(z: int) -> bytes:
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def zigzag(n: int) -> bytes:
    """Avro's ``long``: zig-zag, then a little-endian base-128 varint."""
    if -64 <= n < 64:
        return _SMALL[n + 64]
    cached = _SEEN.get(n)
    if cached is not None:
        return cached
    z = (n << 1) ^ (n >> 63)
    if z >= 0x4000:
        rest = _HIGH.get(z >> 14)
        if rest is None:
            if len(_HIGH) >= _SEEN_MAX:
                _HIGH.clear()
            rest = _HIGH[z >> 14] = _varint(z >> 14)
        k = (z & 0x3FFF) << 1
        encoded = _LOW14[k:k + 2] + rest
    else:
        encoded = _varint(z)
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[n] = encoded
    return encoded


def read_long(b: bytes, i: int, first: int) -> tuple[int, int]:
    """The rest of a varint whose first byte (``first`` >= 0x80, already read) preceded offset ``i``."""
    n = first & 0x7F
    shift = 7
    while True:
        x = b[i]
        i += 1
        n |= (x & 0x7F) << shift
        if x < 0x80:
            return (n >> 1) ^ -(n & 1), i
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


class _Source:
    """Lines of generated code and the constants they name."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.named = named
        self._n = 0
        self._depth = 0

    def var(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def const(self, value: Any) -> str:
        name = self.var("_k")
        self.consts[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def resolve(self, schema: Any) -> Any:
        """A named type's definition (fastavro's parsed form refers to a type by name after its first use)."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            if schema not in self.named:
                raise Unsupported(f"unknown type {schema}")
            return self.named[schema]
        return schema

    def register(self, schema: Any) -> None:
        if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            self.named.setdefault(schema["name"], schema)

    def enter(self) -> None:
        self._depth += 1
        if self._depth > 32:
            raise Unsupported("recursive or too deeply nested schema")

    def leave(self) -> None:
        self._depth -= 1


def _nullable(schema: Any) -> bool:
    return schema == "null" or (isinstance(schema, list) and "null" in schema)


def _optional(schema: list[Any]) -> tuple[int, Any]:
    """(index of null, the other branch) of a ``[null, T]`` union; anything wider is not compiled."""
    if len(schema) != 2 or "null" not in schema or schema[0] == schema[1]:
        raise Unsupported(f"union {schema}")
    null_at = schema.index("null")
    return null_at, schema[1 - null_at]


# -- encoders -----------------------------------------------------------------------------------------------


def _enc(src: _Source, schema: Any, v: str, ind: int) -> None:
    """Code that appends value ``v``'s encoding (``a`` is the parts list's append)."""
    src.register(schema)
    schema = src.resolve(schema)
    if isinstance(schema, list):
        null_at, other = _optional(schema)
        src.emit(ind, f"if {v} is None:")
        src.emit(ind + 1, f"a({src.const(zigzag(null_at))})")
        src.emit(ind, "else:")
        src.emit(ind + 1, f"a({src.const(zigzag(1 - null_at))})")
        _enc(src, other, v, ind + 1)
        return
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "null":
        src.emit(ind, f"if {v} is not None:")
        src.emit(ind + 1, f"raise ValueError('null field got ' + repr({v}))")
    elif kind == "boolean":
        src.emit(ind, f"a(b'\\x01' if {v} else b'\\x00')")
    elif kind in ("int", "long"):
        src.emit(ind, f"a(zigzag({v}))")
    elif kind in ("float", "double"):
        src.emit(ind, f"a({src.const(struct.Struct('<f' if kind == 'float' else '<d').pack)}({v}))")
    elif kind == "string":
        s = src.var("s")
        src.emit(ind, f"{s} = {v}.encode()")
        src.emit(ind, f"a(zigzag(len({s})))")
        src.emit(ind, f"a({s})")
    elif kind == "bytes":
        src.emit(ind, f"a(zigzag(len({v})))")
        src.emit(ind, f"a(bytes({v}))")
    elif kind == "enum":
        table = src.const({sym: zigzag(i) for i, sym in enumerate(schema["symbols"])})
        src.emit(ind, f"a({table}[{v}])")
    elif kind == "array":
        x = src.var("x")
        src.emit(ind, f"if {v}:")
        src.emit(ind + 1, f"a(zigzag(len({v})))")
        src.emit(ind + 1, f"for {x} in {v}:")
        src.enter()
        _enc(src, schema["items"], x, ind + 2)
        src.leave()
        src.emit(ind, "a(b'\\x00')")
    elif kind == "map":
        k, x = src.var("k"), src.var("x")
        src.emit(ind, f"if {v}:")
        src.emit(ind + 1, f"a(zigzag(len({v})))")
        src.emit(ind + 1, f"for {k}, {x} in {v}.items():")
        src.enter()
        _enc(src, "string", k, ind + 2)
        _enc(src, schema["values"], x, ind + 2)
        src.leave()
        src.emit(ind, "a(b'\\x00')")
    elif kind == "record":
        src.enter()
        for field in schema["fields"]:
            f = src.var("f")
            if "default" in field:
                src.emit(ind, f"{f} = {v}.get({field['name']!r}, {src.const(field['default'])})")
            elif _nullable(src.resolve(field["type"])):
                src.emit(ind, f"{f} = {v}.get({field['name']!r})")
            else:  # no value and no default: refused, as fastavro does
                src.emit(ind, f"{f} = {v}[{field['name']!r}]")
            _enc(src, field["type"], f, ind)
        src.leave()
    else:
        raise Unsupported(f"type {kind}")


def compile_encoder(schema: Any) -> Encoder | None:
    """An encoder of records of ``schema`` (fastavro's parsed form) to Avro binary, or None if not covered."""
    encoder: Encoder | None = _function(
        "encode", schema, ["def encode(r):", "    parts = []", "    a = parts.append"],
        lambda src: _enc(src, schema, "r", 1), "    return b''.join(parts)", {"zigzag": zigzag})
    return encoder


def compile_fields_encoder(schema: Any, first: str, last: str | None = None) -> Encoder | None:
    """An encoder of the fields ``first`` to ``last`` (None: to the end) of record ``schema``, alone.

    Why: a record's Avro body is its fields' encodings one after another, nothing between them, so the bytes of
    a run of fields can be encoded once and joined with others. The matcher's start commands share all but two
    fields per event (:mod:`pipeline.protocol.starts`). Raises ``ValueError`` for a field the record lacks or a
    ``last`` before ``first``; None if the fields use something the compiler does not cover."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("fields are encoded alone only from a record schema")
    names = [f["name"] for f in schema["fields"]]
    if first not in names or (last is not None and last not in names):
        raise ValueError(f"{_name(schema)} has no field {first if first not in names else last}")
    start, stop = names.index(first), (names.index(last) + 1 if last is not None else len(names))
    if stop <= start:
        raise ValueError(f"field {last} comes before {first} in {_name(schema)}")
    part = {"type": "record", "name": f"{_name(schema)}[{first}:{last or ''}]", "fields": schema["fields"][start:stop]}
    named: dict[str, Any] = {}
    _collect_named(schema, named)  # a named type used in the slice may be defined by an earlier field
    encoder: Encoder | None = _function(
        "encode", part, ["def encode(r):", "    parts = []", "    a = parts.append"],
        lambda src: _enc(src, part, "r", 1), "    return b''.join(parts)", {"zigzag": zigzag}, named)
    return encoder


def _collect_named(schema: Any, named: dict[str, Any]) -> None:
    """Every named type (record, enum, fixed) defined inside ``schema``, by name."""
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            if schema["name"] in named:
                return
            named[schema["name"]] = schema
        for field in schema.get("fields", ()):
            _collect_named(field["type"], named)
        for key in ("items", "values"):
            if key in schema:
                _collect_named(schema[key], named)


def _function(name: str, schema: Any, head: list[str], body: Callable[[_Source], None], tail: str,
              helpers: dict[str, Any], named: dict[str, Any] | None = None) -> Any:
    """Generate, compile and return function ``name`` (None if the schema is not covered)."""
    src = _Source(dict(named or {}))
    src.lines.extend(head)
    try:
        body(src)
    except Unsupported:
        return None
    src.lines.append(tail)
    namespace: dict[str, Any] = {**helpers, **src.consts}
    exec(compile("\n".join(src.lines), f"<avro {name} {_name(schema)}>", "exec"), namespace)
    return namespace[name]


def _name(schema: Any) -> str:
    return str(schema.get("name", "?")) if isinstance(schema, dict) else str(schema)
