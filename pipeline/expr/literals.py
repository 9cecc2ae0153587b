"""CEL string and bytes literals, decoded as the specification says (``langdef.md``, "String and Bytes Values").

celpy's own decoding keeps the backslash of ``\\?``, leaves ``\\X41`` undecoded and drops a raw newline inside a
triple-quoted string, so ``event.data.s == "a\\?b"`` would never match. This module is the one place literals are
decoded; it is pure and raises :class:`ValueError` with the reason for a malformed escape.
"""

from __future__ import annotations

import re
from typing import Final

_SIMPLE: Final[dict[str, int]] = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11,
                                  "\\": 92, "?": 63, '"': 34, "'": 39, "`": 96}
_PREFIX_RE: Final = re.compile(r"[rRbB]{0,2}")


def split_literal(token: str) -> tuple[bool, bool, str]:
    """(raw, bytes, body) of a string or bytes literal token, quotes removed."""
    m = _PREFIX_RE.match(token)
    assert m is not None  # the pattern matches the empty string
    prefix = m.group(0)
    flags = prefix.lower()
    if len(set(flags)) != len(flags):
        raise ValueError(f"bad literal prefix {prefix!r}")
    rest = token[len(prefix):]
    quote = rest[:3] if rest[:3] in ('"""', "'''") else rest[:1]
    if quote not in ('"', "'", '"""', "'''") or not rest.endswith(quote) or len(rest) < 2 * len(quote):
        raise ValueError("unterminated literal")
    return "r" in flags, "b" in flags, rest[len(quote):len(rest) - len(quote)]


def decode_string(token: str) -> str:
    """The value of a CEL string literal token (``"..."``, ``'...'``, triple-quoted, ``r``-prefixed)."""
    raw, is_bytes, body = split_literal(token)
    if is_bytes:
        raise ValueError("a bytes literal is not a string")
    if raw:
        return body
    out: list[str] = []
    for unit in _units(body, is_bytes=False):
        if isinstance(unit, int):
            if 0xD800 <= unit <= 0xDFFF or unit > 0x10FFFF:
                raise ValueError(f"\\u escape {unit:#x} is not a Unicode scalar value")
            out.append(chr(unit))
        else:
            out.append(unit)
    return "".join(out)


def decode_bytes(token: str) -> bytes:
    """The value of a CEL bytes literal token (``b"..."``): text as UTF-8, ``\\x``/octal escapes as single bytes."""
    raw, is_bytes, body = split_literal(token)
    if not is_bytes:
        raise ValueError("a string literal is not bytes")
    if raw:
        return body.encode("utf-8")
    out = bytearray()
    for unit in _units(body, is_bytes=True):
        if isinstance(unit, int):
            out.append(unit)
        else:
            out += unit.encode("utf-8")
    return bytes(out)


def _units(body: str, *, is_bytes: bool) -> list[str | int]:
    """Split a literal body into text runs (``str``) and escapes (``int`` code points or byte values)."""
    units: list[str | int] = []
    i, n, start = 0, len(body), 0
    while i < n:
        if body[i] != "\\":
            i += 1
            continue
        if start < i:
            units.append(body[start:i])
        if i + 1 >= n:
            raise ValueError("a literal cannot end with a lone backslash")
        c = body[i + 1]
        if c in _SIMPLE:
            units.append(_SIMPLE[c])
            i += 2
        elif c in "xX":
            units.append(_hex(body, i + 2, 2))
            i += 4
        elif c in "uU":
            if is_bytes:
                raise ValueError(f"\\{c} escapes are not allowed in bytes literals")
            width = 4 if c == "u" else 8
            units.append(_hex(body, i + 2, width))
            i += 2 + width
        elif c in "0123":
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits):
                raise ValueError(f"bad octal escape \\{digits}")
            units.append(int(digits, 8))
            i += 4
        else:
            raise ValueError(f"unknown escape \\{c}")
        start = i
    if start < n:
        units.append(body[start:])
    return units


def _hex(body: str, at: int, width: int) -> int:
    digits = body[at:at + width]
    if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
        raise ValueError(f"bad hex escape {body[at - 2:at + width]!r}")
    return int(digits, 16)
