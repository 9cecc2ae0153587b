"""Which functions an event can start: functions indexed by trigger event name (pure, no Kafka).

Exact names are one dict lookup; wildcard triggers (``app/user.*``) are a short prefix list.
Trigger expressions are compiled closures, evaluated only for the candidates of a name.
"""

from __future__ import annotations

from typing import Any

from ..sdk.function import CompiledTrigger, Function

MAX_CACHED_NAMES = 100_000


class TriggerIndex:
    """Functions by trigger event name."""

    def __init__(self, functions: list[Function]) -> None:
        self.exact: dict[str, list[tuple[Function, CompiledTrigger]]] = {}
        self.wildcards: list[tuple[str, Function, CompiledTrigger]] = []
        self._cache: dict[str, list[tuple[Function, CompiledTrigger]]] = {}
        self._repeats: set[str] = set()  # names with a function among their candidates twice (two triggers)
        for fn in functions:
            for trig in fn.triggers:
                if trig.prefix is not None:
                    self.wildcards.append((trig.prefix, fn, trig))
                else:
                    self.exact.setdefault(trig.event, []).append((fn, trig))

    def candidates(self, name: str) -> list[tuple[Function, CompiledTrigger]]:
        """Functions whose trigger names match ``name`` (before expressions).

        Cached per name, so wildcard prefixes are scanned once per distinct event name, not per
        event (bounded: the cache is dropped when it outgrows ``MAX_CACHED_NAMES``)."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        found = self.exact.get(name, [])
        if self.wildcards:
            extra = [(fn, trig) for prefix, fn, trig in self.wildcards if name.startswith(prefix)]
            if extra:
                found = found + extra
        if len(self._cache) >= MAX_CACHED_NAMES:
            self._cache.clear()
            self._repeats.clear()
        self._cache[name] = found
        if len({id(fn) for fn, _ in found}) < len(found):
            self._repeats.add(name)
        return found

    def matches(self, name: str, event: dict[str, Any]) -> list[Function]:
        """Functions that ``event`` starts: name matches and the trigger expression holds.

        A function with two triggers that both match starts once."""
        out: list[Function] = []
        activation = None
        candidates = self.candidates(name)
        repeats = name in self._repeats  # only then can a function match twice: checked per name, not per match
        for fn, trig in candidates:
            if trig.expr is not None:
                if activation is None:
                    activation = {"event": event}
                if not trig.expr.evaluate(activation):
                    continue
            if not repeats or not any(f is fn for f in out):  # identity: dataclass __eq__ is slow, not what we mean
                out.append(fn)
        return out

    def has(self, name: str) -> bool:
        return bool(self.candidates(name))
