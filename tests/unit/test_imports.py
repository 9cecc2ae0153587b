"""The import graph of ``pipeline`` has no circle, and services depend only downward.

Services (matcher, run owner, workers, canceller, API) talk through topics, so none imports another: what they
share is the contract in ``pipeline.protocol``, which imports no service and not the SDK. Checked on the
source (function-level imports included), so a circle hidden in a function body is caught as well. Imports
under ``if TYPE_CHECKING:`` are left out: they never run, and a part may name the type of what holds it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pipeline

ROOT = Path(pipeline.__file__).resolve().parent
SERVICES = ("matcher", "run_owner", "workers", "canceller", "api", "sources")
# The contract and the layers below the services: none of them may import a service
LOWER = ("protocol", "kafka", "serde", "expr", "config", "broker", "logs", "health", "instance")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["pipeline", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The pipeline modules ``name`` imports. ``from pkg import sub`` imports the submodule ``pkg.sub``, and only
    names that are not submodules make it depend on ``pkg`` itself (its ``__init__``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                 for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(target)
    return {m for m in found if m in known and m != name}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_circle() -> None:
    assert _cycles(_graph()) == []


def test_the_circle_check_can_fail() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_service_imports_another() -> None:
    crossings = defaultdict(set)
    for module, deps in _graph().items():
        for dep in deps:
            if _layer(module) in SERVICES and _layer(dep) in SERVICES and _layer(dep) != _layer(module):
                crossings[module].add(dep)
    assert dict(crossings) == {}


def test_lower_layers_import_no_service_and_the_contract_no_sdk() -> None:
    upward = defaultdict(set)
    for module, deps in _graph().items():
        for dep in deps:
            if _layer(module) in LOWER and (_layer(dep) in SERVICES or _layer(dep) in ("sdk", "supervise", "cli")):
                upward[module].add(dep)
    assert dict(upward) == {}
