"""Run the CEL conformance tests (``../shared/cel-spec/testdata``) through ``pipeline.expr``.

Each test gets one verdict:

* ``pass``: the compiled path gave the expected value (or an error where one is expected); on the full
  evaluator (cel-expr-python), its value matched and the predicate answered as the value says;
* ``refused``: ``compile_expr`` raised :class:`ExprError` with a message: the app would fail at load time;
* ``n/a``: the test needs what events cannot hold or the API does not take: protobuf messages, enums or
  type values as inputs or results, a ``container``, unknowns, a check-only or macro-less parse, a
  qualified variable name;
* ``wrong``: a value or error other than the expected one. There must be none.

``python -m tests.cel.conformance`` prints the counts per file (the table in docs/expressions.md).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.expr import ExprError, compile_expr
from pipeline.expr.compile import compile_node
from pipeline.expr.values import UInt

from .textproto import Quoted, parse

# ../shared/cel-spec beside the project (as CI has it), or PIPELINE_CEL_SPEC_DIR
SPEC_DIR = Path(os.environ.get("PIPELINE_CEL_SPEC_DIR") or
                Path(__file__).resolve().parents[2].parent / "shared" / "cel-spec" / "testdata")
_IDENT_OK = __import__("re").compile(r"[_a-zA-Z][_a-zA-Z0-9]*\Z")


class NotApplicable(Exception):
    """The test needs something outside what events and the expression API can express."""


class _Error:
    """An expected or observed evaluation error."""

    def __repr__(self) -> str:
        return "<error>"


ERROR = _Error()


@dataclass(frozen=True)
class Verdict:
    file: str
    section: str
    name: str
    expr: str
    verdict: str
    detail: str = ""


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, Quoted) else str(v)


def _number(token: Any) -> float:
    text = _text(token).lower()
    return {"inf": math.inf, "-inf": -math.inf, "infinity": math.inf, "-infinity": -math.inf,
            "nan": math.nan}.get(text) if text in ("inf", "-inf", "infinity", "-infinity", "nan") else float(text)


def to_python(value: dict[str, list[Any]]) -> Any:
    """A ``cel.expr.Value`` as the JSON-like Python value the evaluator works on."""
    if "null_value" in value:
        return None
    if "bool_value" in value:
        return _text(value["bool_value"][0]) == "true"
    if "int64_value" in value:
        return int(_text(value["int64_value"][0]), 0)
    if "uint64_value" in value:
        return UInt(int(_text(value["uint64_value"][0]), 0))
    if "double_value" in value:
        return _number(value["double_value"][0])
    if "string_value" in value:
        return _text(value["string_value"][0])
    if "bytes_value" in value:
        return bytes(value["bytes_value"][0])
    if "list_value" in value:
        return [to_python(v) for v in value["list_value"][0].get("values", [])]
    if "map_value" in value:
        out: dict[Any, Any] = {}
        for entry in value["map_value"][0].get("entries", []):
            out[to_python(entry["key"][0])] = to_python(entry["value"][0])
        return out
    if not value:  # an empty Value message: in the suite, a list or map left empty
        raise NotApplicable("an empty Value message")
    raise NotApplicable(f"a {next(iter(value))} value")


def same(expected: Any, got: Any) -> bool:
    """CEL value identity: types as well as values (1 is not 1u nor 1.0; NaN is NaN; lists and maps deep)."""
    if expected is ERROR or got is ERROR:
        return expected is got
    if type(expected) is not type(got):
        return False
    if isinstance(expected, float):
        return (math.isnan(expected) and math.isnan(got)) or expected == got
    if isinstance(expected, list):
        return len(expected) == len(got) and all(same(a, b) for a, b in zip(expected, got, strict=False))
    if isinstance(expected, dict):
        if len(expected) != len(got):
            return False
        gots = list(got.items())
        return all(any(same(k, gk) and same(v, gv) for gk, gv in gots) for k, v in expected.items())
    return bool(expected == got)


def _loose(expected: Any, got: Any) -> bool:
    """cel-expr-python's plain values lose uint-ness inside lists and maps and give bytearrays."""
    if expected is ERROR or got is ERROR:
        return expected is got
    if isinstance(got, bytearray):
        got = bytes(got)
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, float) and isinstance(got, float) and math.isnan(expected):
        return math.isnan(got)
    if isinstance(expected, list):
        return isinstance(got, list) and len(expected) == len(got) and all(map(_loose, expected, got))
    if isinstance(expected, dict):
        return isinstance(got, dict) and len(expected) == len(got) and all(
            any(_loose(k, gk) and _loose(v, gv) for gk, gv in got.items()) for k, v in expected.items())
    return (type(expected) in (int, UInt) and type(got) is int and expected == got) or (
        type(expected) is type(got) and expected == got)


def _expected(test: dict[str, list[Any]]) -> Any:
    if "unknown" in test or "any_unknowns" in test:
        raise NotApplicable("expects an unknown")
    if "eval_error" in test or "any_eval_errors" in test:
        return ERROR
    if "typed_result" in test:
        result = test["typed_result"][0].get("result")
        if not result:
            raise NotApplicable("checks a deduced type only")
        return to_python(result[0])
    if "value" in test:
        return to_python(test["value"][0])
    return True  # the suite's default: the expression evaluates to true


def _activation(test: dict[str, list[Any]]) -> tuple[tuple[str, ...], dict[str, Any]]:
    names: list[str] = [_text(d["name"][0]) for d in test.get("type_env", [])]
    activation: dict[str, Any] = {}
    for binding in test.get("bindings", []):
        name = _text(binding["key"][0])
        expr_value = binding["value"][0]
        if "value" not in expr_value:
            raise NotApplicable("a binding that is an error or unknown")
        activation[name] = to_python(expr_value["value"][0])
        names.append(name)
    if any(not _IDENT_OK.match(n) for n in names):
        raise NotApplicable("a qualified variable name")
    return tuple(dict.fromkeys(names)), activation


def judge(test: dict[str, list[Any]]) -> tuple[str, str]:
    """(verdict, detail) of one test."""
    source = _text(test["expr"][0])
    try:
        for flag in ("container", "check_only", "disable_macros"):
            if flag in test and _text(test[flag][0]) not in ("", "false"):
                raise NotApplicable(flag)
        variables, activation = _activation(test)
        expected = _expected(test)
    except NotApplicable as exc:
        return "n/a", str(exc)
    try:
        expr = compile_expr(source, variables)
    except ExprError as exc:
        return ("refused", str(exc)) if str(exc) else ("wrong", "refused without a message")
    if expr.compiled:
        try:
            got = compile_node(expr.ast)(activation)
        except Exception:
            got = ERROR
        if not same(expected, got):
            return "wrong", f"compiled: expected {expected!r}, got {got!r}"
    else:
        got = _full_value(expr.source, variables, activation)
        if not _loose(expected, got):
            return "wrong", f"{expr.backend}: expected {expected!r}, got {got!r}"
    if expr.evaluate(activation) is not (expected is True):
        return "wrong", f"the predicate answered {expected is not True} for a value of {expected!r}"
    return "pass", ""


def _full_value(source: str, variables: tuple[str, ...], activation: dict[str, Any]) -> Any:
    from pipeline.expr.fallback import _cel_env

    try:
        result = _cel_env(variables).compile(source, disable_check=True).eval(data=activation)
    except Exception:
        return ERROR
    if str(result.type()) == "ERROR":
        return ERROR
    value = result.plain_value()
    kind = str(result.type())
    if kind == "UINT":
        return UInt(value)
    return value


def run(spec_dir: Path = SPEC_DIR) -> list[Verdict]:
    """Every test of every file, judged."""
    verdicts: list[Verdict] = []
    for path in sorted(spec_dir.glob("*.textproto")):
        suite = parse(path.read_text(encoding="utf-8"))
        for section in suite.get("section", []):
            for test in section.get("test", []):
                verdict, detail = judge(test)
                verdicts.append(Verdict(path.stem, _text(section["name"][0]), _text(test["name"][0]),
                                        _text(test["expr"][0]), verdict, detail))
    return verdicts


def table(verdicts: list[Verdict]) -> str:
    """Counts per file, as a Markdown table."""
    files = sorted({v.file for v in verdicts})
    kinds = ("pass", "refused", "n/a", "wrong")
    lines = ["| file | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for f in [*files, "**all**"]:
        counts = [sum(v.verdict == k and (f == "**all**" or v.file == f) for v in verdicts) for k in kinds]
        lines.append(f"| {f} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    results = run(Path(sys.argv[1]) if len(sys.argv) > 1 else SPEC_DIR)
    print(table(results))
    for v in results:
        if v.verdict == "wrong":
            print(f"WRONG {v.file}/{v.section}/{v.name}: {v.expr!r}: {v.detail}")
