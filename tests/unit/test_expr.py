"""Unit tests for pipeline.expr: the fast subset, CEL semantics, errors, fallback, residuals."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pipeline.expr import (
    Expr,
    ExprError,
    Residual,
    UInt,
    compile_expr,
    join_paths,
    lookup_path,
    normalize_key_value,
)
from pipeline.expr.ast import Binary, Ident, Lit, Select, Unary, to_source
from pipeline.expr.fallback import _celpy

EVENT: dict[str, Any] = {
    "id": "01HXYZ",
    "name": "app/invoice.paid",
    "ts": 1700000000000,
    "v": "2024-01-01.1",
    "user": {"id": "u_1", "email": "a@example.com"},
    "data": {
        "plan": "pro",
        "amount": 150,
        "price": 99.5,
        "count": 100.0,
        "tags": ["a", "b"],
        "nested": {"k": "v", "n": 2},
        "flag": True,
        "off": False,
        "nothing": None,
        "import-id": "dash",
        "in": "reserved",
        "importId": "imp_1",
        "region": "eu",
        "text": "Hello, World",
        "ids": [1, 2, 3],
    },
}


def ev(source: str, event: object = EVENT, **others: object) -> bool:
    variables = ("event", *others)
    return compile_expr(source, variables).evaluate({"event": event, **others})


# ------------------------------------------------------------------------------------------------
# the fast subset


@pytest.mark.parametrize(
    "source, expected",
    [
        ('event.data.plan == "pro"', True),
        ('event.data.plan != "pro"', False),
        ('event.data.plan == "free"', False),
        ('event.name == "app/invoice.paid"', True),
        ('event.data.nested.k == "v"', True),
        ('event["data"]["import-id"] == "dash"', True),
        ('event.data["in"] == "reserved"', True),
        ("event.data.tags[0] == 'a'", True),
        ("event.data.tags[1] == 'b'", True),
        ("event.data.ids[2] == 3", True),
        ("event.data.flag", True),
        ("event.data.flag == true", True),
        ("event.data.off == false", True),
        ("!event.data.off", True),
        ("event.data.nothing == null", True),
        ("event.data.plan != null", True),
        ("event.data.amount > 100", True),
        ("event.data.amount >= 150", True),
        ("event.data.amount < 150", False),
        ("event.data.amount <= 150", True),
        ("event.data.price < 100", True),
        ("100 < event.data.amount", True),
        ("200 <= event.data.amount", False),
        ('event.data.plan == "pro" && event.data.amount > 100', True),
        ('event.data.plan == "free" || event.data.amount > 100', True),
        ('event.data.plan == "free" || event.data.amount > 200', False),
        ('event.data.amount > 100 ? event.data.plan == "pro" : false', True),
        ('event.data.amount > 200 ? true : event.data.plan == "free"', False),
        ('event.data.plan in ["pro", "team"]', True),
        ('event.data.plan in ["free"]', False),
        ("2 in event.data.ids", True),
        ("2.0 in event.data.ids", True),
        ("7 in event.data.ids", False),
        ('"k" in event.data.nested', True),
        ('"zz" in event.data.nested', False),
        ("has(event.data.plan)", True),
        ("has(event.data.zzz)", False),
        ("has(event.data.nested.n)", True),
        ("size(event.data.tags) == 2", True),
        ("event.data.tags.size() == 2", True),
        ("size(event.data.plan) == 3", True),
        ("size(event.data.nested) == 2", True),
        ('event.data.text.startsWith("Hello")', True),
        ('event.data.text.endsWith("World")', True),
        ('event.data.text.contains(", ")', True),
        ('event.data.text.contains("xyz")', False),
        ("event.data.amount + 50 == 200", True),
        ("event.data.amount - 50 == 100", True),
        ("event.data.amount * 2 == 300", True),
        ("event.data.amount / 4 == 37", True),
        ("event.data.amount % 7 == 3", True),
        ("event.data.price * 2.0 == 199.0", True),
        ("-event.data.amount == -150", True),
        ('event.data.plan + "!" == "pro!"', True),
        ("event.data.tags + ['c'] == ['a', 'b', 'c']", True),
        ("[1, 2] == [1, 2]", True),
        ('event.data.nested == {"k": "v", "n": 2}', True),
        ("event.user.id == 'u_1' && event.ts > 0", True),
        ("true", True),
        ("false", False),
        ("1 == 1", True),
    ],
)
def test_fast_subset(source: str, expected: bool) -> None:
    expr = compile_expr(source)
    assert expr.compiled, source
    assert expr.evaluate({"event": EVENT}) is expected


def test_evaluate_returns_bool_only_for_boolean_true() -> None:
    # a non-bool result is "no match", not truthiness
    assert ev("event.data.plan") is False
    assert ev("event.data.amount") is False
    assert ev("event.data.tags") is False
    assert ev("1") is False


def test_compiled_flag_and_backend() -> None:
    fast = compile_expr('event.data.plan == "pro"')
    assert fast.compiled and fast.backend == "compiled"
    slow = compile_expr('event.data.tags.exists(t, t == "a")')
    assert not slow.compiled and slow.backend in ("cel-expr-python", "celpy")
    assert slow.evaluate({"event": EVENT}) is True


# ------------------------------------------------------------------------------------------------
# numbers: by value across int/uint/double (CEL spec, cel-cpp), unlike celpy 0.5


@pytest.mark.parametrize(
    "source",
    [
        "100.0 == 100",
        "100 == 100.0",
        "150 > 100.5",
        "100.5 < 150",
        "1u == 1",
        "1u < 2.5",
        "-1 < 1u",
        "event.data.count == 100",  # 100.0 in the data
        "event.data.amount == 150.0",
        "event.data.amount > 100.5",
        "event.data.price > 99",
        "event.data.amount == 150u",
        "[1, 2] == [1.0, 2.0]",
        "-0.0 == 0.0",
        "7 / 2 == 3",
        "-7 / 2 == -3",
        "-7 % 3 == -1",
        "1.0 / 0.0 > 1e308",
    ],
)
def test_numbers_compare_by_value(source: str) -> None:
    expr = compile_expr(source)
    assert expr.compiled
    assert expr.evaluate({"event": EVENT}) is True


@pytest.mark.parametrize(
    "source",
    [
        "event.data.flag == 1",  # bool is not a number in CEL
        "event.data.off == 0",
        "event.data.flag > 0",  # error: no overload
        "1 + 1.0 == 2.0",  # arithmetic is not heterogeneous
        "event.data.amount + 0.5 > 0.0",
        "9223372036854775807 + 1 > 0",  # int64 overflow is an error
        "1u - 2u == 0u",  # uint underflow
        "1 / 0 == 0",
        "5 % 0 == 0",
        "5.5 % 2.0 == 1.5",
        "0.0 / 0.0 == 0.0 / 0.0",  # NaN
        '"a" < 1',
        "null < 1",
        "[1] < [2]",
        "event.data.plan > 1",
        "true < 1",
    ],
)
def test_number_and_type_errors_do_not_match(source: str) -> None:
    expr = compile_expr(source)
    assert expr.compiled
    assert expr.evaluate({"event": EVENT}) is False


def test_nan_inequality() -> None:
    assert ev("0.0 / 0.0 != 0.0 / 0.0")


# ------------------------------------------------------------------------------------------------
# missing fields, bad data, error semantics


@pytest.mark.parametrize(
    "source",
    [
        "event.data.missing == 1",
        "event.data.missing != 1",  # an error, not "not equal"
        "event.data.missing.deeper == 1",
        "event.data.plan.deeper == 1",  # select on a string
        "event.data.tags.x == 1",  # select on a list
        "event.data.tags[5] == 'a'",
        "event.data.tags[-1] == 'b'",  # no negative indexes in CEL
        "event.data.tags['a'] == 1",
        "event.data.plan[0] == 'p'",  # strings are not indexable
        "!event.data.missing",
        "!event.data.plan",
        "event.data.missing > 1",
        "has(event.data.missing.x)",
        "has(event.data.plan.x)",
        "size(event.data.amount) == 0",
        "event.data.amount.startsWith('1')",
        "event.data.missing ? true : true",
        "event.data.plan ? true : true",
        "event.data.missing == null",
        "1 in event.data.plan",
        "event.data.missing && true",
        "true && event.data.plan",
        "event.data.missing || false",
        "[1, event.data.missing][0] == 1",
        '{"a": event.data.missing}.a == 1',
        "async.data.x == 1",  # a declared variable that is absent from the activation
    ],
)
def test_errors_are_no_match(source: str) -> None:
    expr = compile_expr(source, ("event", "async"))
    assert expr.compiled
    assert expr.evaluate({"event": EVENT}) is False


@pytest.mark.parametrize("bad", [None, [], "x", 1, {"data": None}, {"data": []}, {"data": "s"}, {}])
def test_never_raises_for_bad_data(bad: object) -> None:
    for source in (
        'event.data.plan == "pro"',
        "event.data.amount > 100",
        "has(event.data.plan)",
        "event.data.tags[0] == 'a'",
        'event.data.tags.exists(t, t == "a")',  # fallback too
        "size(event.data.tags) > 0",
        "!(event.data.plan == 'x')",
    ):
        assert compile_expr(source).evaluate({"event": bad}) is False
    assert compile_expr('event.data.plan == "pro"').evaluate({}) is False


@pytest.mark.parametrize(
    "source, expected",
    [
        ("false && event.data.missing", False),
        ("event.data.missing && false", False),
        ("true || event.data.missing", True),
        ("event.data.missing || true", True),
        ("event.data.missing || event.data.flag", True),
        ("!(event.data.missing && false)", True),  # the && is false, not an error
        ("!(event.data.missing || false)", False),  # the || is an error
        ("!(false && event.data.plan)", True),  # non-bool operand is an error only if it matters
        ("event.data.plan || true", True),
        ("event.data.plan && false", False),
        ("(event.data.missing == 1) == false", False),  # errors propagate through ==
        ("event.data.missing == 1 || event.data.other == 2 || event.data.flag", True),
        ("event.data.missing == 1 && event.data.other == 2 && event.data.off", False),
    ],
)
def test_commutative_logic_errors(source: str, expected: bool) -> None:
    expr = compile_expr(source)
    assert expr.compiled
    assert expr.evaluate({"event": EVENT}) is expected


def test_double_negation_cancels_like_cel_go() -> None:
    # cel-go/cel-cpp parse ``!!x`` as ``x``; parentheses keep both negations
    assert compile_expr("!!event.data.flag").ast == compile_expr("event.data.flag").ast
    assert ev('!!event.data.plan == "pro"')
    assert not ev('!(!event.data.plan) == "pro"')  # ! on a string is an error
    assert ev("!!!event.data.off")


# ------------------------------------------------------------------------------------------------
# the `async` identifier


def test_async_variable_compiled() -> None:
    expr = compile_expr("async.data.importId == event.data.importId", ("event", "async"))
    assert expr.compiled
    assert expr.evaluate({"event": EVENT, "async": {"data": {"importId": "imp_1"}}})
    assert not expr.evaluate({"event": EVENT, "async": {"data": {"importId": "other"}}})
    assert not expr.evaluate({"event": EVENT, "async": {"data": {}}})
    assert not expr.evaluate({"event": EVENT})


def test_async_variable_fallback() -> None:
    expr = compile_expr("async.data.ids.exists(i, i == event.data.amount)", ("event", "async"))
    assert not expr.compiled
    assert expr.evaluate({"event": EVENT, "async": {"data": {"ids": [1, 150]}}})
    assert not expr.evaluate({"event": EVENT, "async": {"data": {"ids": [1]}}})
    assert not expr.evaluate({"event": EVENT, "async": {"data": {}}})  # ERROR value is not a match


def test_celpy_fallback_accepts_async() -> None:
    evaluate = _celpy("async.data.importId == event.data.importId", ("event", "async"))
    assert evaluate({"event": EVENT, "async": {"data": {"importId": "imp_1"}}})
    assert not evaluate({"event": EVENT, "async": {"data": {}}})


# ------------------------------------------------------------------------------------------------
# fallback


@pytest.mark.parametrize(
    "source, expected",
    [
        ('event.data.tags.exists(t, t == "b")', True),
        ('event.data.tags.all(t, t in ["a", "b"])', True),
        ("event.data.ids.exists_one(i, i > 2)", True),
        ("event.data.ids.map(i, i * 2)[2] == 6", True),
        ("size(event.data.ids.filter(i, i > 1)) == 2", True),
        ('event.data.plan.matches("^p.o$")', True),
        ('matches(event.data.plan, "^x")', False),
        ("int(event.data.price) == 99", True),
        ('string(event.data.amount) == "150"', True),
        ('timestamp("2024-01-01T00:00:00Z") < timestamp("2024-06-01T00:00:00Z")', True),
        ("type(event.data.amount) == int", True),
        ('event.data.text.lowerAscii() == "hello, world"', True),
        ("{1: 'a'}[1] == 'a'", True),
        ("event.data.missing.exists(x, x)", False),
        ("event.data.ids.exists(x, x == event.data.count)", False),
        ("event.data.ids.exists(x, x * 50 == event.data.count / 2.0)", True),  # 50 == 50.0
    ],
)
def test_fallback(source: str, expected: bool) -> None:
    expr = compile_expr(source)
    assert not expr.compiled
    assert expr.evaluate({"event": EVENT}) is expected


def test_fallback_numbers_follow_the_spec() -> None:
    # cel-cpp's checker rejects these; compiled with the checker off they compare by value
    assert compile_expr("event.data.ids.exists(i, i == 2.0)").evaluate({"event": EVENT})
    assert compile_expr("event.data.ids.exists(i, 150 > 100.5)").evaluate({"event": EVENT})


# ------------------------------------------------------------------------------------------------
# compile errors


@pytest.mark.parametrize(
    "source, problem",
    [
        ("evnt.data.x == 1", "unknown variable 'evnt'"),
        ("event.data.x == ", "unexpected end of expression"),
        ('event.data.x == "abc', "unexpected character"),
        ("event.data.x @ 1", "unexpected character '@'"),
        ("(event.data.x", "unexpected end"),
        ("foo(event.data.x)", "unknown function foo()"),
        ("event.data.x.bar()", "unknown function .bar()"),
        ("has(event)", "has() argument must be a field selection"),
        ("has(event.a, event.b)", "has() takes exactly one argument"),
        ("event.data.l.exists(1, true)", "must be a variable name"),
        ("event.data.l.exists(x)", "takes 2 arguments"),
        ("event.data.l.exists(x, y > 1)", "unknown variable 'y'"),
        ("9223372036854775808 == event.data.x", "out of range"),
        ("-1u == event.data.x", "out of range"),
        ("Foo{a: 1}", "message construction"),
        ('{"a": 1, "a": 2} == event.data', "duplicate map key"),
        ("", "empty expression"),
        ("   ", "empty expression"),
    ],
)
def test_compile_errors(source: str, problem: str) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(source)
    err = info.value
    assert problem in str(err)
    assert err.source == source
    assert repr(source) in str(err)  # the message names the expression
    assert isinstance(err, ValueError)


def test_compile_error_position() -> None:
    with pytest.raises(ExprError) as info:
        compile_expr('event.data.a == 1 && evnt.data.b == 2')
    assert (info.value.line, info.value.column) == (1, 22)
    assert "line 1, column 22" in str(info.value)
    with pytest.raises(ExprError) as info:
        compile_expr("event.data.a ==\n  == 2")
    assert info.value.line == 2


def test_unknown_variable_depends_on_declared_variables() -> None:
    with pytest.raises(ExprError, match="unknown variable 'async'"):
        compile_expr("async.data.x == 1")
    assert compile_expr("async.data.x == 1", ("event", "async")).compiled


def test_loop_variables_are_scoped() -> None:
    compile_expr("event.data.tags.exists(t, t == 'a') && event.data.ids.all(i, i > 0)")
    with pytest.raises(ExprError, match="unknown variable 't'"):
        compile_expr("event.data.tags.exists(t, t == 'a') && t == 'a'")


def test_invalid_arguments() -> None:
    with pytest.raises(ExprError):
        compile_expr(None)  # type: ignore[arg-type]
    with pytest.raises(ExprError):
        compile_expr("event.x", ("event", "not a name"))


# ------------------------------------------------------------------------------------------------
# partial evaluation and residuals

CANCEL = "async.data.importId == event.data.importId && event.data.n > 2"


def _partial(source: str, event: object) -> Residual:
    return compile_expr(source, ("event", "async")).partial({"event": event})


def test_partial_substitutes_and_folds() -> None:
    r = _partial(CANCEL, {"data": {"importId": "abc", "n": 5}})
    assert r.to_source() == 'async.data.importId == "abc"'
    assert r.variables == ("async",)
    assert not r.is_true and not r.is_false
    assert r.equality_keys() == [("data.importId", "abc")]
    assert r.without_keys().is_true


def test_partial_false_when_bound_part_fails() -> None:
    assert _partial(CANCEL, {"data": {"importId": "abc", "n": 1}}).is_false
    r = _partial(CANCEL, {"data": {"importId": "abc"}})  # n missing: error, false at the top
    assert r.is_false and r.to_source() == "false"


def test_partial_missing_field_in_comparison_with_async() -> None:
    r = _partial(CANCEL, {"data": {"n": 5}})
    assert r.is_false  # async.data.importId == <error> can never be true


def test_partial_without_async_folds_to_constant() -> None:
    assert _partial('event.data.plan == "pro"', EVENT).is_true
    assert _partial('event.data.plan == "free"', EVENT).is_false
    assert _partial("event.data.missing == 1", EVENT).is_false
    assert _partial("has(event.data.plan) && event.data.amount >= 150", EVENT).is_true


def test_partial_keeps_error_semantics_inside_negation() -> None:
    # !(error || x) is an error when x is false, not !x
    r = _partial("!(event.data.missing == 1 || async.data.x == 1)", {"data": {}})
    expr = r.to_expr()
    assert not expr.evaluate({"async": {"data": {"x": 2}}})
    assert not expr.evaluate({"async": {"data": {"x": 1}}})
    # false && error is false, so the negation is true
    r2 = _partial("!(event.data.off && async.data.missing == 1)", {"data": {"off": False}})
    assert r2.is_true


@pytest.mark.parametrize(
    "source, event, expected",
    [
        ("async.data.x == event.data.x && true", {"data": {"x": 1}}, "async.data.x == 1"),
        ("true && async.data.x == event.data.x", {"data": {"x": 1}}, "async.data.x == 1"),
        ("async.data.x == event.data.x && false", {"data": {"x": 1}}, "false"),
        ("async.data.x == event.data.x || true", {"data": {"x": 1}}, "true"),
        ("async.data.x == event.data.x || false", {"data": {"x": 1}}, "async.data.x == 1"),
        ('"abc" == "abc" && async.data.x > event.data.x', {"data": {"x": 1.5}}, "async.data.x > 1.5"),
        ("event.data.x > 1 ? async.data.a : async.data.b", {"data": {"x": 2}}, "async.data.a"),
        ("event.data.x > 1 ? async.data.a : async.data.b", {"data": {"x": 0}}, "async.data.b"),
        ("async.data.l.exists(e, e == event.data.x)", {"data": {"x": "s"}}, 'async.data.l.exists(e, e == "s")'),
        # a loop variable named like a bound variable shadows it
        ("async.data.l.exists(event, event == 1)", {"data": {}}, "async.data.l.exists(event, event == 1)"),
        ("async.data == event.data", {"data": {"k": [1, 2.5]}}, 'async.data == {"k": [1, 2.5]}'),
        ('async.name == event.name && async.data.id == event.data["id"]', {"name": "a/b", "data": {"id": 7}},
         'async.name == "a/b" && async.data.id == 7'),
        ("async.data.x == event.data.x && !(async.data.y == 1)", {"data": {"x": 1}},
         "async.data.x == 1 && !(async.data.y == 1)"),
        ("!(async.data.y && true)", {}, "!(async.data.y && true)"),  # `&& true` still demands a bool
    ],
)
def test_partial_sources(source: str, event: object, expected: str) -> None:
    r = _partial(source, event)
    assert r.to_source() == expected
    again = compile_expr(r.to_source(), ("async",))
    assert to_source(again.ast) == expected


def test_residual_equality_follows_the_literal_type() -> None:
    # CEL never equates 1 with true, and 1 with 1.0 only by value: residuals compare (and hash) by text
    expr = compile_expr("async.x == event.v", ("event", "async"))
    by_value = {name: expr.partial({"event": {"v": v}}) for name, v in
                (("int", 1), ("bool", True), ("float", 1.0), ("int2", 1))}
    assert by_value["int"] == by_value["int2"] and hash(by_value["int"]) == hash(by_value["int2"])
    assert by_value["int"] != by_value["bool"]
    assert by_value["int"] != by_value["float"]
    assert len(set(by_value.values())) == 3
    assert by_value["int"] != Residual(by_value["int"].ast, ("event",))  # other variables


def test_compiled_follows_backend() -> None:
    fast = compile_expr('event.data.plan == "pro"')
    slow = compile_expr('event.data.plan.lowerAscii() == "pro"')
    assert (fast.compiled, fast.backend) == (True, "compiled")
    assert slow.compiled is False and slow.backend != "compiled"
    assert fast.evaluate({"event": EVENT}) is True and slow.evaluate({"event": EVENT}) is True


def test_residual_compiles_and_agrees() -> None:
    source = 'async.data.importId == event.data.importId && async.data.kind in ["a", "b"] && event.data.n > 2'
    expr = compile_expr(source, ("event", "async"))
    bound = {"data": {"importId": "abc", "n": 5}}
    r = expr.partial({"event": bound})
    rest = compile_expr(r.to_source(), ("async",))
    assert rest.compiled
    for cand in (
        {"data": {"importId": "abc", "kind": "a"}},
        {"data": {"importId": "abc", "kind": "c"}},
        {"data": {"importId": "xyz", "kind": "a"}},
        {"data": {}},
        {},
    ):
        assert rest.evaluate({"async": cand}) == expr.evaluate({"event": bound, "async": cand})
        assert r.to_expr().evaluate({"async": cand}) == rest.evaluate({"async": cand})


def test_partial_rejects_unknown_binding() -> None:
    with pytest.raises(ValueError):
        compile_expr("event.x == 1").partial({"async": {}})


def test_partial_of_fallback_expression() -> None:
    r = _partial("async.data.ids.exists(i, i == event.data.n) && async.data.k == event.data.k",
                 {"data": {"n": 2, "k": "z"}})
    assert r.to_source() == 'async.data.ids.exists(i, i == 2) && async.data.k == "z"'
    assert r.equality_keys() == [("data.k", "z")]
    rest = r.without_keys().to_expr()
    assert not rest.compiled
    assert rest.evaluate({"async": {"data": {"ids": [1, 2]}}})


# ------------------------------------------------------------------------------------------------
# equality keys and join paths


def test_equality_keys_both_orders_and_normalization() -> None:
    r = _partial(
        'event.data.a == async.data.a && async.data.b == event.data.b && async.data.c == event.data.c && '
        'async.data.d == event.data.d && async["data"]["e-f"] == event.data.e',
        {"data": {"a": "x", "b": 100.0, "c": 2.5, "d": True, "e": None}},
    )
    assert r.equality_keys() == [
        ("data.a", "x"),
        ("data.b", 100),
        ("data.c", 2.5),
        ("data.d", True),
        ("data.e-f", None),
    ]
    assert type(r.equality_keys()[1][1]) is int
    assert r.without_keys().is_true


def test_equality_keys_leave_other_conjuncts() -> None:
    r = _partial(
        "async.data.id == event.data.id && async.data.n > 3 && (async.data.x == 1 || async.data.y == 2)",
        {"data": {"id": 9}},
    )
    assert r.equality_keys() == [("data.id", 9)]
    assert r.without_keys().to_source() == "async.data.n > 3 && (async.data.x == 1 || async.data.y == 2)"
    assert r.equality_keys("event") == []


def test_equality_keys_skip_unusable_literals() -> None:
    r = _partial(
        'async.data.a == b"x" && async.data.b == [1] && async.data.c == 0.0 / 0.0 && async.data.d == 1u'
        ' && async.x.y == "k"',
        {},
    )
    assert r.equality_keys() == [("data.d", 1), ("x.y", "k")]
    assert r.without_keys().to_source() == 'async.data.a == b"x" && async.data.b == [1] && async.data.c == (0.0 / 0.0)'


def test_equality_keys_not_under_or_or_not() -> None:
    assert _partial('async.data.a == "x" || async.data.b == "y"', {}).equality_keys() == []
    assert _partial('!(async.data.a == "x")', {}).equality_keys() == []
    assert _partial('async == "x"', {}).equality_keys() == []  # the whole variable is not a path


def test_join_paths() -> None:
    def paths(source: str) -> list[str]:
        return join_paths(compile_expr(source, ("event", "async")), "async")

    assert paths("async.data.importId == event.data.importId") == ["data.importId"]
    assert paths("event.data.importId == async.data.importId") == ["data.importId"]
    assert paths('async.data.a == event.data.a && async.data.b == "lit" && async.data.a == event.data.x') == [
        "data.a",
        "data.b",
    ]
    assert paths("async.data.a == async.data.b") == []  # other side references async
    assert paths("async.data.a == event.data.a || async.data.b == event.data.b") == []
    assert paths("async.data.a > event.data.a") == []
    assert paths('async["data"]["a"] == event.data.a') == ["data.a"]
    assert paths("async.data.n == event.data.n + 1") == ["data.n"]
    assert join_paths(compile_expr("event.data.x == 1"), "async") == []


@pytest.mark.parametrize(
    "a, b, equal",
    [
        ("abc", "abc", True),
        (100, 100.0, True),
        (100, 100.5, False),
        (0, -0.0, True),
        (1, True, False),
        (0, False, False),
        (None, "null", False),
        ("1", 1, False),
        ("", None, False),
        (UInt(5), 5, True),
        (2.5, 2.5, True),
        (math.inf, math.inf, True),
        ([1], "[1]", False),
        ({"a": 1}, '{"a":1}', False),
        ('a"b', 'a"b', True),
        ("é", "é", True),
    ],
)
def test_normalize_key_value(a: object, b: object, equal: bool) -> None:
    assert (normalize_key_value(a) == normalize_key_value(b)) is equal
    assert isinstance(normalize_key_value(a), str)


def test_normalize_key_value_text() -> None:
    assert normalize_key_value("abc") == '"abc"'
    assert normalize_key_value(100.0) == "100"
    assert normalize_key_value(2.5) == "2.5"
    assert normalize_key_value(True) == "true"
    assert normalize_key_value(None) == "null"
    assert normalize_key_value(-7) == "-7"


def test_lookup_path() -> None:
    obj = {"data": {"importId": "x", "n": None, "l": [1], "d": {"e": 0}}}
    assert lookup_path(obj, "data.importId") == (True, "x")
    assert lookup_path(obj, "data.n") == (True, None)
    assert lookup_path(obj, "data.d.e") == (True, 0)
    assert lookup_path(obj, "data.missing") == (False, None)
    assert lookup_path(obj, "data.l.x") == (False, None)
    assert lookup_path(obj, "data.importId.x") == (False, None)
    assert lookup_path(None, "data") == (False, None)
    assert lookup_path(obj, "") == (True, obj)


# ------------------------------------------------------------------------------------------------
# printing


@pytest.mark.parametrize(
    "source",
    [
        'event.data.a == "x" && (event.data.b == 1 || event.data.c == 2)',
        "(event.data.a ? event.data.b : event.data.c) ? event.data.d : event.data.e",
        "event.data.a ? event.data.b : event.data.c ? event.data.d : event.data.e",
        "event.data.a - (event.data.b - event.data.c) == 1",
        "(event.data.a + event.data.b) * event.data.c == 1",
        "-event.data.a == -(1)",
        "event.data.a - -1 == 0",
        "!(event.data.a == 1)",
        "!(!event.data.a)",
        '"a\\"b\\\\c\\n\\t\\x01é" == event.data.s',
        'b"\\xff\\x00a" == event.data.s',
        "event.data.f == 1e+300 || event.data.f == 2.5e-05 || event.data.f == 3.0",
        "event.data.l == [1, 2u, null, true, \"s\"] && event.data.m == {\"k\": [1]}",
        'event.data["in"] == 1 && event.data["a-b"] == 2 && event.data["true"] == 3',
        "has(event.data.x) && size(event.data.l) > 0 && event.data.s.startsWith(\"a\")",
        "event.data.l.exists(x, x > 1) && event.data.l.map(x, x * 2, x > 0) == []",
        "(1).x == 1 || (-1.5).y == 1",
    ],
)
def test_to_source_round_trip(source: str) -> None:
    ast = compile_expr(source).ast
    printed = to_source(ast)
    assert compile_expr(printed).ast == ast, printed


def test_to_source_literals() -> None:
    assert to_source(Binary("==", Select(Ident("e"), "in"), Lit("x"))) == 'e["in"] == "x"'
    assert to_source(Lit(2**63)) == "9223372036854775808u"
    assert to_source(Lit(UInt(3))) == "3u"
    assert to_source(Lit(float("inf"))) == "(1.0 / 0.0)"
    assert to_source(Unary("-", Lit(1))) == "-(1)"
    assert to_source(Lit({"a": [1, None]})) == '{"a": [1, null]}'


def test_expr_is_hashable_and_cached() -> None:
    a = compile_expr('event.data.plan == "pro"')
    b = compile_expr('event.data.plan == "pro"')
    assert a == b and hash(a) == hash(b)
    assert isinstance(a, Expr)
    assert "compiled" in repr(a)


def test_large_int_versus_double_is_exact() -> None:
    # documented deviation: cel-cpp converts the int to a double (2**53 + 1 == 2.0**53 there)
    assert ev("9007199254740993 > 9007199254740992.0")
    assert not ev("9007199254740993 == 9007199254740992.0")
    assert normalize_key_value(2**53 + 1) != normalize_key_value(float(2**53))


def test_constant_error_below_the_root_is_printed_as_an_error() -> None:
    r = _partial("!(event.data.missing == 1 || async.data.x == 1)", {"data": {}})
    assert r.to_source().startswith('!({}["no such key')
    expr = compile_expr(r.to_source(), ("async",))
    assert expr.compiled
    assert not expr.evaluate({"async": {"data": {"x": 2}}})


def test_root_error_or_is_dropped() -> None:
    r = _partial("async.data.x == event.data.x || async.data.y == 1", {"data": {}})
    assert r.to_source() == "async.data.y == 1"


def test_expr_error_pickles() -> None:
    import pickle

    with pytest.raises(ExprError) as info:
        compile_expr("evnt.x == 1")
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.source == "evnt.x == 1" and again.column == 1
