"""Avro binary decoders compiled to Python source: a whole record, or a projection of some of its fields.

The decoding half of :mod:`pipeline.serde.compiled` (which holds the shared code generator and the encoders),
apart so that each module stays one job. Why compiled at all, and what the schemas may use, is said there. A
decoder is compiled only for a record written with the reader's own schema; an older writer schema goes through
fastavro's schema resolution (:class:`pipeline.serde.avro.Serde`).
"""

from __future__ import annotations

import struct
from typing import Any

from .compiled import _VARINT_REST, Decoder, Unsupported, _function, _optional, _Source, read_long, zigzag


def _read_long(src: _Source, target: str, ind: int) -> None:
    x = src.var("x")
    src.emit(ind, f"{x} = b[i]")
    src.emit(ind, "i += 1")
    src.emit(ind, f"if {x} < 128:")
    src.emit(ind + 1, f"{target} = ({x} >> 1) ^ -({x} & 1)")
    src.emit(ind, "else:")
    src.emit(ind + 1, f"{target}, i = read_long(b, i, {x})")


def _read_bytes(src: _Source, target: str, ind: int) -> None:
    n = src.var("n")
    _read_long(src, n, ind)
    src.emit(ind, f"if {n} < 0 or i + {n} > end:")
    src.emit(ind + 1, "raise ValueError('length beyond the end of the record')")
    src.emit(ind, f"{target} = b[i:i + {n}]")
    src.emit(ind, f"i += {n}")


def _dec(src: _Source, schema: Any, target: str, ind: int) -> None:
    """Code that reads one value of ``schema`` at ``b[i:]`` into ``target`` and moves ``i`` past it."""
    src.register(schema)
    schema = src.resolve(schema)
    if isinstance(schema, list):
        null_at, other = _optional(schema)
        branch = src.var("u")
        _read_long(src, branch, ind)
        src.emit(ind, f"if {branch} == {null_at}:")
        src.emit(ind + 1, f"{target} = None")
        src.emit(ind, f"elif {branch} == {1 - null_at}:")
        _dec(src, other, target, ind + 1)
        src.emit(ind, "else:")
        src.emit(ind + 1, f"raise ValueError('union branch ' + str({branch}) + ' out of range')")
        return
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "null":
        src.emit(ind, f"{target} = None")
    elif kind == "boolean":
        src.emit(ind, f"{target} = b[i] == 1")
        src.emit(ind, "i += 1")
    elif kind in ("int", "long"):
        _read_long(src, target, ind)
    elif kind in ("float", "double"):
        size = 4 if kind == "float" else 8
        unpack = src.const(struct.Struct("<f" if kind == "float" else "<d").unpack_from)
        src.emit(ind, f"{target} = {unpack}(b, i)[0]")
        src.emit(ind, f"i += {size}")
    elif kind == "string":
        raw = src.var("r")
        _read_bytes(src, raw, ind)
        src.emit(ind, f"{target} = {raw}.decode()")
    elif kind == "bytes":
        _read_bytes(src, target, ind)
    elif kind == "enum":
        symbols = src.const(tuple(schema["symbols"]))
        index = src.var("e")
        _read_long(src, index, ind)
        src.emit(ind, f"if {index} < 0:")
        src.emit(ind + 1, "raise ValueError('negative enum index')")
        src.emit(ind, f"{target} = {symbols}[{index}]")
    elif kind in ("array", "map"):
        items, count, item = src.var("l"), src.var("c"), src.var("y")
        src.emit(ind, f"{items} = {{}}" if kind == "map" else f"{items} = []")
        _read_long(src, count, ind + 0)
        src.emit(ind, f"while {count}:")
        src.emit(ind + 1, f"if {count} < 0:")
        src.emit(ind + 2, f"{count} = -{count}")
        _read_long(src, src.var("skip"), ind + 2)  # a negative count is followed by the block's size in bytes
        src.emit(ind + 1, f"for _ in range({count}):")
        src.enter()
        if kind == "map":
            key = src.var("k")
            _dec(src, "string", key, ind + 2)
            _dec(src, schema["values"], item, ind + 2)
            src.emit(ind + 2, f"{items}[{key}] = {item}")
        else:
            _dec(src, schema["items"], item, ind + 2)
            src.emit(ind + 2, f"{items}.append({item})")
        src.leave()
        _read_long(src, count, ind + 1)
        src.emit(ind, f"{target} = {items}")
    elif kind == "record":
        src.enter()
        names = []
        for field in schema["fields"]:
            f = src.var("f")
            _dec(src, field["type"], f, ind)
            names.append(f"{field['name']!r}: {f}")
        src.leave()
        src.emit(ind, f"{target} = {{{', '.join(names)}}}")
    else:
        raise Unsupported(f"type {kind}")


def _skip(src: _Source, schema: Any, ind: int) -> None:
    """Code that moves ``i`` past one value of ``schema``, checking it as :func:`_dec` would read it (varints,
    lengths, union branches, enum indexes, UTF-8) but building nothing: a body the full decoder refuses is
    refused here too."""
    src.register(schema)
    schema = src.resolve(schema)
    if isinstance(schema, list):
        null_at, other = _optional(schema)
        x, branch = src.var("x"), src.var("u")
        src.emit(ind, f"{x} = b[i]")
        src.emit(ind, "i += 1")
        src.emit(ind, f"if {x} != {zigzag(null_at)[0]}:")  # a null (most optional fields): one byte, nothing more
        src.emit(ind + 1, f"if {x} < 128:")
        src.emit(ind + 2, f"{branch} = ({x} >> 1) ^ -({x} & 1)")
        src.emit(ind + 1, "else:")
        src.emit(ind + 2, f"{branch}, i = read_long(b, i, {x})")
        src.emit(ind + 1, f"if {branch} == {1 - null_at}:")
        src.emit(ind + 2, "pass")
        _skip(src, other, ind + 2)
        src.emit(ind + 1, f"elif {branch} != {null_at}:")
        src.emit(ind + 2, f"raise ValueError('union branch ' + str({branch}) + ' out of range')")
        return
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "null":
        return
    if kind == "boolean":
        src.emit(ind, "b[i]")  # a truncated body raises, as the decoder's read does
        src.emit(ind, "i += 1")
    elif kind in ("int", "long"):
        x = src.var("x")
        src.emit(ind, f"{x} = b[i]")
        src.emit(ind, "i += 1")
        src.emit(ind, f"if {x} >= 128:")  # a timestamp's 6 bytes: found by a regex, not decoded byte by byte
        src.emit(ind + 1, f"{x} = varint_rest(b, i)")
        src.emit(ind + 1, f"if {x} is None:")
        src.emit(ind + 2, "raise ValueError('truncated varint, or longer than 10 bytes')")
        src.emit(ind + 1, f"i = {x}.end()")
    elif kind in ("float", "double", "string", "bytes"):  # read as the decoder reads them (a string's UTF-8
        _dec(src, kind, src.var("z"), ind)  # checked at C speed), into a name nothing reads
    elif kind == "enum":
        index = src.var("e")
        _read_long(src, index, ind)
        src.emit(ind, f"if not 0 <= {index} < {len(schema['symbols'])}:")
        src.emit(ind + 1, "raise ValueError('enum index out of range')")
    elif kind in ("array", "map"):
        count = src.var("c")
        _read_long(src, count, ind)
        src.emit(ind, f"while {count}:")
        src.emit(ind + 1, f"if {count} < 0:")
        src.emit(ind + 2, f"{count} = -{count}")
        _read_long(src, src.var("skip"), ind + 2)  # the block's size in bytes: its items are still read, checked
        src.emit(ind + 1, f"for _ in range({count}):")
        src.enter()
        if kind == "map":
            _skip(src, "string", ind + 2)
            _skip(src, schema["values"], ind + 2)
        else:
            _skip(src, schema["items"], ind + 2)
        src.emit(ind + 2, "pass")
        src.leave()
        _read_long(src, count, ind + 1)
    elif kind == "record":
        src.enter()
        for field in schema["fields"]:
            _skip(src, field["type"], ind)
        src.leave()
    else:
        raise Unsupported(f"type {kind}")


def compile_projection(schema: Any, fields: tuple[str, ...]) -> Decoder | None:
    """A decoder of the top-level ``fields`` of a record written with ``schema`` itself: ``decode(body, offset) ->
    ({field: value} of those fields, end)``. The other fields are read past, checked but not built, so a body
    either decoder refuses the other refuses too.

    Why: a reader that needs a handful of a big record's fields (the API's run table needs 8 of a run state's 30,
    and none of its steps or event) paid for building the whole record, nested step records included. A name
    that is not a field of the record, or a schema the compiler does not cover, gives None."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    wanted = set(fields)
    if not wanted <= {f["name"] for f in schema["fields"]}:
        return None

    def body(src: _Source) -> None:
        src.register(schema)
        names = []
        for field in schema["fields"]:
            if field["name"] in wanted:
                f = src.var("f")
                _dec(src, field["type"], f, 1)
                names.append(f"{field['name']!r}: {f}")
            else:
                _skip(src, field["type"], 1)
        src.emit(1, f"out = {{{', '.join(names)}}}")

    decoder: Decoder | None = _function("project", schema, ["def project(b, i):", "    end = len(b)"], body,
                                        "    return out, i", {"read_long": read_long, "varint_rest": _VARINT_REST})
    return decoder


def compile_decoder(schema: Any) -> Decoder | None:
    """A decoder of Avro binary written with ``schema`` itself: ``decode(body, offset) -> (record, end)``."""
    decoder: Decoder | None = _function(
        "decode", schema, ["def decode(b, i):", "    end = len(b)"],
        lambda src: _dec(src, schema, "out", 1), "    return out, i", {"read_long": read_long})
    return decoder
