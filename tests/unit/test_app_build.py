"""Building an app: a module's source is scanned for waits once for all its functions, with the same results
and errors as a scan per function, and an edited module is scanned again."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import pipeline
from pipeline.sdk import waits
from pipeline.sdk.waits import INVOKED_FINISHED, DeclaredWait, declared_waits

HEAD = "import pipeline\nc = pipeline.Inngest(app_id='x')\n"


def _define(name: str) -> str:
    return (f"@c.create_function(fn_id='{name}', trigger=pipeline.TriggerEvent(event='e'))\n"
            f"def {name}(ctx):\n    return None\n")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does: inspect finds the module of a handler there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def test_every_function_of_a_module_gets_the_waits_of_the_whole_module_from_one_scan(tmp_path: Path) -> None:
    body = ("def helper(ctx):\n    return ctx.step.wait_for_event('w', event='doc/reviewed', if_exp='async.data.a == "
            "event.data.a', timeout=1)\n" + "".join(_define(f"f{i}") for i in range(50))
            + "def parent(ctx):\n    return ctx.step.invoke('c', function=f0)\n")
    (tmp_path / "many_fns_mod.py").write_text(HEAD + body)
    before = waits._scan.cache_info()
    try:
        module = _load(tmp_path / "many_fns_mod.py", "many_fns_mod")
        after = waits._scan.cache_info()
        assert after.misses - before.misses == 1 and after.hits - before.hits == 49
        fns = [getattr(module, f"f{i}") for i in range(50)]
        assert all(fn.waits == fns[0].waits for fn in fns)
        assert [(w.event, w.join_path) for w in fns[0].waits] == [
            ("doc/reviewed", "data.a"), ("inngest/function.finished", "data.invoke_correlation_id")]
        found = declared_waits(fns[0].handler)
        assert found == [DeclaredWait("doc/reviewed", "async.data.a == event.data.a"), INVOKED_FINISHED]
        found.clear()  # callers get their own list: the cached scan is not touched
        assert len(declared_waits(fns[1].handler)) == 2
    finally:
        sys.modules.pop("many_fns_mod", None)


def test_a_refused_wait_fails_every_definition_of_the_module_with_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "bad_wait_mod.py"
    path.write_text(HEAD + "name = 'a/b'\n" + _define("f")
                    + "def g(ctx):\n    return ctx.step.wait_for_event('w', event=name, timeout=1)\n")
    for _ in range(2):  # the second time from the cache
        with pytest.raises(pipeline.DefinitionError, match=r"'x-f': step.wait_for_event 'event': line 8: "
                                                           r"wait_for_event\(event=...\) must be a string literal"):
            _load(path, "bad_wait_mod")


def test_an_edited_module_is_scanned_again(tmp_path: Path) -> None:
    path = tmp_path / "edited_mod.py"
    path.write_text(HEAD + _define("f"))
    try:
        assert _load(path, "edited_mod").f.waits == ()
        path.write_text(HEAD + _define("f") + "def g(ctx):\n    return ctx.step.wait_for_event('w', event='late/x', "
                                              "timeout=1)\n")
        assert [w.event for w in _load(path, "edited_mod").f.waits] == ["late/x"]
    finally:
        sys.modules.pop("edited_mod", None)


def test_functions_share_a_compiled_concurrency_key_and_a_bad_key_fails_each_definition() -> None:
    app = pipeline.Inngest(app_id="keys")
    fns = [app.create_function(fn_id=f"f{i}", trigger=pipeline.TriggerEvent(event="e"),
                               concurrency=pipeline.Concurrency(limit=2, key="event.data.account_id"))(lambda ctx: None)
           for i in range(3)]
    keys = [fn.concurrency[0].key for fn in fns]
    assert all(k is not None and k._fn is keys[0]._fn for k in keys)  # type: ignore[union-attr]
    assert fns[2].slot_keys({"data": {"account_id": 7}}) == ["keys-f2\x1f0\x1f7"]
    assert fns[2].slot_keys({"data": {}}) == ["keys-f2\x1f0\x1fnull"]
    for fn_id, key, problem in (("typo", "evnt.data.a", "evnt"), ("typo2", "evnt.data.a", "evnt"),
                                ("syntax", "event.data.", "syntax error"),
                                ("slow", "event.data.a.matches('x')", "not supported in a key expression")):
        named = rf"'keys-{fn_id}': concurrency\[0\] key {re.escape(repr(key))}.*{problem}"
        with pytest.raises(pipeline.DefinitionError, match=named):
            app.create_function(fn_id=fn_id, trigger=pipeline.TriggerEvent(event="e"),
                                concurrency=pipeline.Concurrency(limit=2, key=key))(lambda ctx: None)
