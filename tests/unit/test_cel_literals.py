"""CEL string and bytes literals decoded as the specification says (the cases celpy's decoding got wrong)."""

from __future__ import annotations

import pytest

from pipeline.expr import ExprError, compile_expr
from pipeline.expr.literals import decode_bytes, decode_string


@pytest.mark.parametrize(("token", "value"), [
    (r'"a\?b"', "a?b"),
    (r'"\X41\x42"', "AB"),
    ('"""a\nb"""', "a\nb"),
    ("'''x\n'''", "x\n"),
    (r'"\101\u00e9\U0001F600"', "A\u00e9\U0001F600"),
    (r'r"a\?b"', "a\\?b"),
    (r"R'\n'", "\\n"),
    (r'"\a\b\f\n\r\t\v\\\"\'\`"', "\a\b\f\n\r\t\v\\\"'`"),
])
def test_string_literals(token: str, value: str) -> None:
    assert decode_string(token) == value


@pytest.mark.parametrize(("token", "value"), [
    (r'b"\xff\000"', b"\xff\x00"),
    ('b"\u00ff"', b"\xc3\xbf"),  # text is UTF-8
    (r'rb"\x00"', b"\\x00"),
    (r"B'''a\?'''", b"a?"),
])
def test_bytes_literals(token: str, value: bytes) -> None:
    assert decode_bytes(token) == value


@pytest.mark.parametrize("token", [r'"\q"', r'"\x4"', r'"\400"', r'"\ud800"', r'b"\u0041"', r'"\U00110000"'])
def test_bad_escapes_are_refused(token: str) -> None:
    with pytest.raises(ValueError):
        decode_string(token) if not token.startswith("b") else decode_bytes(token)


def test_an_expression_with_such_literals_matches_what_it_says() -> None:
    assert compile_expr(r'event.data.s == "a\?b"').evaluate({"event": {"data": {"s": "a?b"}}})
    multi = compile_expr('event.data.s == """a\nb"""')
    assert multi.evaluate({"event": {"data": {"s": "a\nb"}}})
    assert not multi.evaluate({"event": {"data": {"s": "ab"}}})
    with pytest.raises(ExprError, match="invalid string literal"):
        compile_expr(r'event.data.s == "\q"')


def test_duplicate_map_keys_across_int_and_uint_are_refused() -> None:
    with pytest.raises(ExprError, match="duplicate map key"):
        compile_expr("{0: 1, 0u: 2}[0] == 1")
    assert compile_expr("{true: 1, 1: 2}[1] == 2").evaluate({})


def test_a_leading_dot_identifier_is_the_root_variable_or_refused() -> None:
    assert compile_expr(".event.data.n == 1").evaluate({"event": {"data": {"n": 1}}})
    with pytest.raises(ExprError, match="leading-dot"):  # would print as the loop variable in a residual
        compile_expr("[1].exists(event, .event.data.n == 1)")
    with pytest.raises(ExprError, match="unknown variable 'v'"):  # .v is not the loop variable v
        compile_expr("[1].exists(v, .v == 1)")
