"""Differential tests: the compiled closures against cel-expr-python (cel-cpp) as the oracle.

Random expressions in the fast subset are printed to CEL text and compiled by both; for every
random event the answers must agree (an oracle error counts as False, like "no match").
The residual of a cancel expression must also agree with the original, and the equality-key
split (key match + the rest) must be exact.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.expr import compile_expr, lookup_path, normalize_key_value
from pipeline.expr.ast import (
    Binary,
    Call,
    Cond,
    Has,
    Ident,
    Index,
    ListExpr,
    Lit,
    MapExpr,
    Node,
    Select,
    Unary,
    and_all,
    to_source,
)
from pipeline.expr.values import UInt

cel = pytest.importorskip("cel_expr_python.cel")

_ENV = cel.NewEnv(variables={"event": cel.Type.DYN, "async": cel.Type.DYN})


def oracle(source: str, activation: dict[str, object]) -> bool:
    """cel-cpp's answer: True only for a boolean true result (an ERROR value is truthy!)."""
    program = _ENV.compile(source, disable_check=True)
    return program.eval(data=activation).value() is True


# ----------------------------------------------------------------------------------------------
# data

KEYS = ["a", "b", "c", "s", "l", "m", "n"]

common_scalars = st.one_of(
    st.sampled_from([-3, -1, 0, 1, 2, 3, 100, 150]),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, -1.5, 100.0, 100.5, 150.0]),
    st.sampled_from(["", "a", "ab", "abc", "b", "pro", "app/a", "é"]),
    st.booleans(),
    st.none(),
)
rare_scalars = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False),
    # no NUL (cel-expr-python truncates Python strings at NUL when converting the activation)
    # and no lone surrogates (not valid UTF-8, cel-expr-python raises)
    st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=4),
)
scalars = st.one_of(common_scalars, common_scalars, common_scalars, rare_scalars)
json_values = st.one_of(
    scalars,
    scalars,
    scalars,
    st.lists(scalars, max_size=3),
    st.fixed_dictionaries({}, optional={k: scalars for k in KEYS}),
)
# a, b, c, s are always present (so comparisons often decide); l, m, n are often missing
data_dicts = st.fixed_dictionaries({k: json_values for k in KEYS[:4]}, optional={k: json_values for k in KEYS[4:]})
events = st.builds(lambda d, name: {"name": name, "data": d}, data_dicts, st.sampled_from(["app/a", "app/b"]))


# ----------------------------------------------------------------------------------------------
# expressions (ASTs printed with to_source, so the printer is under test too)


def _path(var: str) -> st.SearchStrategy[Node]:
    base = st.builds(lambda k: Select(Select(Ident(var), "data"), k), st.sampled_from(KEYS))
    return st.one_of(
        base,
        base,
        base,
        st.builds(
            lambda k, j: Select(Select(Select(Ident(var), "data"), k), j), st.sampled_from(KEYS), st.sampled_from(KEYS)
        ),
        st.builds(lambda k: Index(Index(Ident(var), Lit("data")), Lit(k)), st.sampled_from(KEYS)),
        st.builds(
            lambda k, i: Index(Select(Select(Ident(var), "data"), k), Lit(i)), st.sampled_from(KEYS), st.integers(-1, 2)
        ),
        st.just(Select(Ident(var), "name")),
    )


literal_nodes = st.one_of(
    st.builds(Lit, st.sampled_from([-3, -1, 0, 1, 2, 3, 100, 150])),
    st.builds(Lit, st.integers(-(2**63), 2**63 - 1)),
    st.builds(Lit, st.sampled_from([0.0, 1.0, 2.5, 100.0, 100.5, -1.5, 1e300])),
    st.builds(Lit, st.sampled_from(["", "a", "ab", "pro", "app/a", "é", 'q"\\\n'])),
    st.builds(Lit, st.booleans()),
    st.just(Lit(None)),
    st.builds(lambda v: Lit(UInt(v)), st.integers(0, 3)),
)


def _values(vars_: tuple[str, ...]) -> st.SearchStrategy[Node]:
    paths = st.one_of(*(_path(v) for v in vars_))
    leaves = st.one_of(paths, paths, literal_nodes)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(Binary, st.sampled_from(["+", "-", "*", "/", "%"]), inner, inner),
            st.builds(Unary, st.just("-"), inner),
            st.builds(lambda x: Call("size", (x,)), inner),
            st.builds(lambda x: Call("size", (), x), inner),
            st.builds(lambda xs: ListExpr(tuple(xs)), st.lists(inner, max_size=3)),
            st.builds(
                lambda kv: MapExpr(tuple((Lit(k), v) for k, v in kv.items())),
                st.dictionaries(st.sampled_from(KEYS), inner, max_size=2),
            ),
            st.builds(Index, inner, literal_nodes),
            st.builds(Cond, paths, inner, inner),
        ),
        max_leaves=4,
    )


def _predicates(vars_: tuple[str, ...]) -> st.SearchStrategy[Node]:
    values = _values(vars_)
    paths = st.one_of(*(_path(v) for v in vars_))
    path_vs_literal = st.builds(Binary, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), paths, literal_nodes)
    atoms = st.one_of(
        path_vs_literal,
        path_vs_literal,
        path_vs_literal,
        st.builds(Binary, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), values, values),
        st.builds(Binary, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), paths, paths),
        st.builds(Binary, st.sampled_from(["==", "!="]), literal_nodes, paths),
        st.builds(Binary, st.just("in"), values, values),
        st.builds(
            lambda p, xs: Binary("in", p, ListExpr(tuple(Lit(x) for x in xs))),
            paths,
            st.lists(st.sampled_from(["a", "pro", "", "b"]), max_size=3),
        ),
        st.builds(Has, paths, st.sampled_from(KEYS)),
        st.builds(lambda v: Has(Select(Ident(v), "data"), "a"), st.sampled_from(vars_)),
        st.builds(lambda m, t, a: Call(m, (a,), t),
                  st.sampled_from(["startsWith", "endsWith", "contains"]), values, values),
        paths,  # a bare path: true only if the field is boolean true
        st.builds(Lit, st.booleans()),
    )
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            st.builds(Binary, st.sampled_from(["&&", "||"]), inner, inner),
            st.builds(Unary, st.just("!"), inner),
            st.builds(Cond, inner, inner, inner),
            st.builds(Binary, st.sampled_from(["==", "!="]), inner, inner),
        ),
        max_leaves=5,
    )


# EXPR_FUZZ_EXAMPLES=20000 for a longer local run; the default keeps the file well under 20 s
EXAMPLES = int(os.environ.get("EXPR_FUZZ_EXAMPLES", "500"))
def _cancel_shaped() -> st.SearchStrategy[Node]:
    """``async.data.k == event.data.k && ...``: the shape whose residual has join keys."""
    def key_eq(k: str, j: str, flip: bool) -> Node:
        a = Select(Select(Ident("async"), "data"), k)
        b = Select(Select(Ident("event"), "data"), j)
        return Binary("==", b, a) if flip else Binary("==", a, b)

    key_eqs = st.builds(key_eq, st.sampled_from(KEYS), st.sampled_from(KEYS), st.booleans())
    lit_eq = st.builds(lambda k, lit: Binary("==", Select(Select(Ident("async"), "data"), k), lit),
                       st.sampled_from(KEYS), literal_nodes)
    conj = st.one_of(key_eqs, key_eqs, lit_eq, _predicates(("event", "async")))
    return st.builds(lambda xs: and_all(list(xs)), st.lists(conj, min_size=1, max_size=4))


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(_predicates(("event",)), st.lists(events, min_size=1, max_size=4))
def test_compiled_matches_cel_cpp(node: Node, evs: list[dict[str, Any]]) -> None:
    source = to_source(node)
    expr = compile_expr(source, ("event",))
    assert expr.compiled, source
    for ev in evs:
        act = {"event": ev}
        assert expr.evaluate(act) == oracle(source, act), (source, ev)


@SETTINGS
@given(st.one_of(_predicates(("event", "async")), _cancel_shaped()), events, st.lists(events, min_size=1, max_size=4))
def test_residual_matches_original(node: Node, ev: dict[str, Any], candidates: list[dict[str, Any]]) -> None:
    source = to_source(node)
    expr = compile_expr(source, ("event", "async"))
    residual = expr.partial({"event": ev})
    rest_source = residual.to_source()
    rest = compile_expr(rest_source, ("async",))
    keys = residual.equality_keys("async")
    without = residual.without_keys("async").to_expr()
    for cand in [*candidates, ev]:  # the event itself satisfies async.data.k == event.data.k
        want = expr.evaluate({"event": ev, "async": cand})
        assert rest.evaluate({"async": cand}) == want, (source, rest_source, ev, cand)
        key_match = True
        for path, lit in keys:
            found, value = lookup_path(cand, path)
            key_match = key_match and found and normalize_key_value(value) == normalize_key_value(lit)
        assert (key_match and without.evaluate({"async": cand})) == want, (source, rest_source, keys, ev, cand)


@SETTINGS
@given(st.one_of(_predicates(("event", "async")), _cancel_shaped()), events, events)
def test_residual_text_matches_cel_cpp(node: Node, ev: dict[str, Any], cand: dict[str, Any]) -> None:
    """The residual text means the same to cel-cpp as the original does."""
    source = to_source(node)
    residual = compile_expr(source, ("event", "async")).partial({"event": ev})
    want = oracle(source, {"event": ev, "async": cand})
    assert oracle(residual.to_source(), {"async": cand}) == want, (source, residual.to_source(), ev, cand)


@settings(max_examples=EXAMPLES, deadline=None)
@given(scalars, scalars)
def test_normalize_key_value_iff_cel_equal(a: object, b: object) -> None:
    """Equal join-key text exactly when CEL says the scalars are equal."""
    act = {"event": {"a": a, "b": b}}
    assert (normalize_key_value(a) == normalize_key_value(b)) == oracle("event.a == event.b", act)
