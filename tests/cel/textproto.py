"""A small reader for protobuf text format, enough for the CEL conformance files (``../shared/cel-spec``).

Without the .proto descriptors every field may repeat, so each message is a dict of field name -> list of
values; a value is a scalar token (str, kept as raw bytes decoded latin-1 when quoted) or a nested dict.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<ext>\[[^\]]*\])
  | (?P<punct>[{}<>:\[\],;])
  | (?P<word>[-+]?[A-Za-z0-9_.+-]+)
""", re.VERBOSE)

_ESC = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
        "\\": b"\\", "'": b"'", '"': b'"', "?": b"?"}


class Quoted(bytes):
    """A quoted scalar: its bytes after unescaping (string fields decode them as UTF-8)."""


def _unescape(body: str) -> Quoted:
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        e = body[i + 1]
        if e in _ESC:
            out += _ESC[e]
            i += 2
        elif e in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            out.append(int(m.group(0), 16))  # type: ignore[union-attr]
            i += 2 + len(m.group(0))  # type: ignore[union-attr]
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(0), 8) & 0xFF)  # type: ignore[union-attr]
            i += 1 + len(m.group(0))  # type: ignore[union-attr]
        elif e in "uU":
            width = 4 if e == "u" else 8
            out += chr(int(body[i + 2:i + 2 + width], 16)).encode("utf-8", "surrogatepass")
            i += 2 + width
        else:
            raise ValueError(f"unknown escape \\{e}")
    return Quoted(out)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read text proto at {text[pos:pos + 40]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        value = m.group(0)
        if kind == "str":
            quoted = _unescape(value[1:-1])
            if out and out[-1][0] == "str":  # adjacent strings concatenate
                out[-1] = ("str", Quoted(out[-1][1] + quoted))
            else:
                out.append(("str", quoted))
        else:
            out.append((kind, value))  # type: ignore[arg-type]
    return out


def parse(text: str) -> dict[str, list[Any]]:
    """The top-level message of a text proto."""
    tokens = _tokens(text)
    message, end = _message(tokens, 0, None)
    assert end == len(tokens)
    return message


def _message(tokens: list[tuple[str, Any]], i: int, close: str | None) -> tuple[dict[str, list[Any]], int]:
    fields: dict[str, list[Any]] = {}
    while i < len(tokens):
        kind, value = tokens[i]
        if close is not None and kind == "punct" and value == close:
            return fields, i + 1
        if kind == "punct" and value in ",;":
            i += 1
            continue
        name = value
        i += 1
        if tokens[i] == ("punct", ":"):
            i += 1
        items, i = _value(tokens, i)
        fields.setdefault(name, []).extend(items)
    if close is not None:
        raise ValueError(f"missing {close!r}")
    return fields, i


def _value(tokens: list[tuple[str, Any]], i: int) -> tuple[list[Any], int]:
    kind, value = tokens[i]
    if kind == "punct" and value in "{<":
        message, i = _message(tokens, i + 1, "}" if value == "{" else ">")
        return [message], i
    if kind == "punct" and value == "[":
        items: list[Any] = []
        i += 1
        while tokens[i] != ("punct", "]"):
            if tokens[i] == ("punct", ","):
                i += 1
                continue
            more, i = _value(tokens, i)
            items.extend(more)
        return items, i + 1
    return [value], i + 1
