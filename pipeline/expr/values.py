"""CEL value semantics over plain JSON-like Python values.

Events arrive as plain Python values (dict/list/str/int/float/bool/None). Instead of converting
them to CEL wrapper types on every evaluation (what makes celpy slow), the compiled closures work
on the raw values and these helpers implement the CEL rules where Python differs:

* ``bool`` is a subclass of ``int`` in Python (``True == 1``), but in CEL ``true != 1`` and
  ``true < 2`` is an error;
* numbers compare by value across int/uint/double (CEL spec, heterogeneous equality as in
  cel-cpp/cel-go), but arithmetic is not heterogeneous (``1 + 1.0`` is an error);
* int arithmetic is 64-bit and overflow is an error; ``/`` and ``%`` truncate toward zero;
* lists compare element-wise, maps by key set and values, and ``<`` is only defined for
  numbers, strings, bytes and bools.

Every helper raises :class:`EvalError` (or lets a native ``KeyError``/``TypeError`` escape) for a
CEL runtime error; the caller turns that into "no match".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeGuard

from .errors import EvalError

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1


class UInt(int):
    """A CEL ``uint`` value (only produced by ``123u`` literals and uint arithmetic).

    A subclass of ``int`` so that comparisons by value work natively; arithmetic checks the exact
    type because CEL has no ``uint + int`` overload.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{int(self)}u"


_NUM: Final[frozenset[type]] = frozenset({int, float, UInt})
_ORDERED_SAME: Final[frozenset[type]] = frozenset({str, bytes, bool})
_SEQ: Final = (list, tuple)


def type_name(v: object) -> str:
    """CEL type name of a plain value, for error messages."""
    t = type(v)
    if t is bool:
        return "bool"
    if t is UInt:
        return "uint"
    if t is int:
        return "int"
    if t is float:
        return "double"
    if t is str:
        return "string"
    if t is bytes:
        return "bytes"
    if v is None:
        return "null_type"
    if isinstance(v, _SEQ):
        return "list"
    if isinstance(v, Mapping):
        return "map"
    return t.__name__


def _overload(op: str, *args: object) -> EvalError:
    return EvalError(f"no matching overload for '{op}' applied to ({', '.join(type_name(a) for a in args)})")


# --------------------------------------------------------------------------------------------
# equality and ordering


def cel_eq(a: object, b: object) -> bool:
    """CEL heterogeneous equality: never an error; values of different kinds are simply unequal."""
    ta = type(a)
    tb = type(b)
    if ta is tb:
        if ta is not list and ta is not tuple and ta is not dict:
            return a == b
        # a list, tuple or dict: tested again on the values so that the type checker narrows a and b
        if type(a) is type(b) is list:
            return _seq_eq(a, b)
        if type(a) is type(b) is dict:
            return _map_eq(a, b)
        # two tuples (never from JSON): the sequence case below
    if ta in _NUM and tb in _NUM:
        return a == b
    if isinstance(a, _SEQ) and isinstance(b, _SEQ):
        return _seq_eq(a, b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return _map_eq(a, b)
    return False


def _seq_eq(a: Sequence[object], b: Sequence[object]) -> bool:
    if len(a) != len(b):
        return False
    # lengths are equal (checked above); zip(strict=...) would cost a keyword call, all() a generator
    for x, y in zip(a, b):  # noqa: B905, SIM110
        if not cel_eq(x, y):
            return False
    return True


def _map_eq(a: Mapping[object, object], b: Mapping[object, object]) -> bool:
    if len(a) != len(b):
        return False
    for k, v in a.items():
        found, w = map_get(b, k)
        if not found or not cel_eq(v, w):
            return False
    return True


class _Ordered(Protocol):
    """A value that :func:`is_ordered` accepted with the other operand.

    ``other`` is ``Any`` because the protocol cannot say "of the same kind as this value"; the
    runtime check can (numbers with numbers, or both str, both bytes or both bool).
    """

    def __lt__(self, other: Any, /) -> bool: ...
    def __le__(self, other: Any, /) -> bool: ...
    def __gt__(self, other: Any, /) -> bool: ...
    def __ge__(self, other: Any, /) -> bool: ...


def is_ordered(a: object, b: object) -> TypeGuard[_Ordered]:
    """True if ``a < b`` (and ``<= > >=``) has a CEL overload: numbers with numbers, or same str/bytes/bool."""
    ta = type(a)
    tb = type(b)
    if ta in _NUM:
        return tb in _NUM
    return ta is tb and ta in _ORDERED_SAME


def cel_lt(a: object, b: object) -> bool:
    if is_ordered(a, b):
        return a < b
    raise _overload("<", a, b)


def cel_le(a: object, b: object) -> bool:
    if is_ordered(a, b):
        return a <= b
    raise _overload("<=", a, b)


def cel_gt(a: object, b: object) -> bool:
    if is_ordered(a, b):
        return a > b
    raise _overload(">", a, b)


def cel_ge(a: object, b: object) -> bool:
    if is_ordered(a, b):
        return a >= b
    raise _overload(">=", a, b)


# --------------------------------------------------------------------------------------------
# containers


def map_get(m: Mapping[object, object], key: object) -> tuple[bool, object]:
    """Look up ``key`` in a CEL map with heterogeneous numeric keys (``1``, ``1u`` and ``1.0`` are
    the same key; ``true`` is not ``1``). JSON maps only have string keys, so the fast case is one
    dict lookup."""
    if type(key) is str:
        if key in m:
            return True, m[key]
        return False, None
    tk = type(key)
    if tk in _NUM or tk is bool:
        for k, v in m.items():
            if type(k) is not str and cel_eq(k, key):
                return True, v
        return False, None
    raise EvalError(f"unsupported map key type: {type_name(key)}")


def cel_index(container: object, index: object) -> object:
    """``container[index]`` for lists (int/uint index, or an integral double as in cel-cpp) and maps."""
    if isinstance(container, _SEQ):
        i: int
        if type(index) is int or type(index) is UInt:
            i = index
        elif type(index) is float and index.is_integer():
            i = int(index)
        else:
            raise EvalError(f"list index must be an integer, got {type_name(index)}")
        if 0 <= i < len(container):
            return container[i]
        raise EvalError(f"index {i} out of range for list of size {len(container)}")
    if isinstance(container, Mapping):
        found, v = map_get(container, index)
        if found:
            return v
        raise EvalError(f"no such key: {index!r}")
    raise _overload("_[_]", container, index)


def cel_in(item: object, container: object) -> bool:
    """``item in container``: list membership by CEL equality, or map key presence."""
    if type(container) is list or type(container) is tuple:
        for x in container:  # noqa: SIM110 - a plain loop is faster than any() over a generator
            if cel_eq(item, x):
                return True
        return False
    if isinstance(container, Mapping):
        if type(item) is str:
            return item in container
        return map_get(container, item)[0]
    if isinstance(container, _SEQ):
        return any(cel_eq(item, x) for x in container)
    raise _overload("@in", item, container)


def cel_size(v: object) -> int:
    if isinstance(v, (str, bytes, list, tuple, Mapping)):
        return len(v)
    raise _overload("size", v)


def cel_has(v: object, field: str) -> bool:
    """``has(v.field)``: presence test on a map (an error on any other type, like cel-cpp)."""
    if isinstance(v, Mapping):
        return field in v
    raise EvalError(f"has() applied to a {type_name(v)}, not a map")


def cel_not(v: object) -> bool:
    if v is True:
        return False
    if v is False:
        return True
    raise _overload("!_", v)


# --------------------------------------------------------------------------------------------
# arithmetic


def _int_result(r: int) -> int:
    if INT64_MIN <= r <= INT64_MAX:
        return r
    raise EvalError("integer overflow")


def _uint_result(r: int) -> UInt:
    if 0 <= r <= UINT64_MAX:
        return UInt(r)
    raise EvalError("unsigned integer overflow")


# The operand types are tested as ``type(a) is type(b) is int`` (not through a saved ``type(a)``) so
# that the type checker narrows both operands. The int case costs the same two ``type()`` calls as
# before; each later case two more (a few ns; uint operands only come from literals, folded at compile time).


def cel_add(a: object, b: object) -> object:
    if type(a) is type(b) is int:
        return _int_result(a + b)
    if type(a) is type(b) is float:
        return a + b
    if type(a) is type(b) is str:
        return a + b
    if type(a) is type(b) is bytes:
        return a + b
    if type(a) is type(b) is UInt:
        return _uint_result(int(a) + int(b))
    if isinstance(a, _SEQ) and isinstance(b, _SEQ):
        return [*a, *b]
    raise _overload("_+_", a, b)


def cel_sub(a: object, b: object) -> object:
    if type(a) is type(b) is int:
        return _int_result(a - b)
    if type(a) is type(b) is float:
        return a - b
    if type(a) is type(b) is UInt:
        return _uint_result(int(a) - int(b))
    raise _overload("_-_", a, b)


def cel_mul(a: object, b: object) -> object:
    if type(a) is type(b) is int:
        return _int_result(a * b)
    if type(a) is type(b) is float:
        return a * b
    if type(a) is type(b) is UInt:
        return _uint_result(int(a) * int(b))
    raise _overload("_*_", a, b)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def cel_div(a: object, b: object) -> object:
    if type(a) is type(b) is int:
        if b == 0:
            raise EvalError("divide by zero")
        return _int_result(_trunc_div(a, b))
    if type(a) is type(b) is float:
        if b == 0.0:  # IEEE 754, where Python raises ZeroDivisionError
            if a != a or a == 0.0:
                return math.nan
            return math.copysign(math.inf, a) * math.copysign(1.0, b)
        return a / b
    if type(a) is type(b) is UInt:
        if b == 0:
            raise EvalError("divide by zero")
        return UInt(int(a) // int(b))
    raise _overload("_/_", a, b)


def cel_mod(a: object, b: object) -> object:
    if type(a) is type(b) is int:
        if b == 0:
            raise EvalError("modulus by zero")
        if a == INT64_MIN and b == -1:
            raise EvalError("integer overflow")
        r = abs(a) % abs(b)
        return -r if a < 0 else r
    if type(a) is type(b) is UInt:
        if b == 0:
            raise EvalError("modulus by zero")
        return UInt(int(a) % int(b))
    raise _overload("_%_", a, b)


def cel_neg(a: object) -> object:
    if type(a) is int:
        return _int_result(-a)
    if type(a) is float:
        return -a
    raise _overload("-_", a)


# --------------------------------------------------------------------------------------------
# strings


def _str_method(name: str, impl: Callable[[str, str], bool]) -> Callable[[object, object], bool]:
    def method(target: object, arg: object) -> bool:
        if type(target) is str and type(arg) is str:
            return impl(target, arg)
        raise _overload(name, target, arg)

    method.__name__ = f"cel_{name}"
    return method


cel_starts_with = _str_method("startsWith", str.startswith)
cel_ends_with = _str_method("endsWith", str.endswith)
cel_contains = _str_method("contains", str.__contains__)


# --------------------------------------------------------------------------------------------
# join keys


_encode_str: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.encode_basestring


def normalize_key_value(v: object) -> str:
    """Canonical text for a join-key value: equal CEL scalars give equal text, unequal ones differ.

    Strings are JSON-quoted, integral floats print as ints (``100.0`` and ``100`` are equal in
    CEL), bools/null as JSON. Lists and maps (never produced by an equality key literal) get a
    JSON text that cannot collide with a scalar. Used on every candidate cancel event to build
    the partition key, hence the type dispatch rather than ``json.dumps``.
    """
    if type(v) is str:
        return _encode_str(v)
    t = type(v)
    if t is int:
        return str(v)
    if t is bool:
        return "true" if v else "false"
    if type(v) is float:
        if v.is_integer():
            return str(int(v))
        if v != v:
            return "NaN"
        if v == math.inf:
            return "Infinity"
        if v == -math.inf:
            return "-Infinity"
        return repr(v)
    if v is None:
        return "null"
    if isinstance(v, int):  # UInt, int subclasses (not bool: handled above)
        return str(int(v))
    try:
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):
        return repr(v)


_PATH_CACHE: dict[str, tuple[str, ...]] = {}


def lookup_path(obj: object, path: str) -> tuple[bool, object]:
    """``(found, value)`` for a dotted path through nested dicts (``"data.importId"``).

    ``""`` is the object itself. Anything that is not a dict along the way means "not found".
    The split path is cached because the same few join paths are looked up for every event.
    """
    parts = _PATH_CACHE.get(path)
    if parts is None:
        parts = tuple(path.split(".")) if path else ()
        if len(_PATH_CACHE) < 4096:
            _PATH_CACHE[path] = parts
    cur = obj
    for p in parts:
        if type(cur) is not dict and not isinstance(cur, Mapping):
            return False, None
        try:
            cur = cur[p]
        except KeyError:
            return False, None
    return True, cur
