"""The package's import graph as Python runs it, read from the source with `ast`.

An edge `a -> b` means importing module `a` runs module `b` at import time: a module-level import (not one
inside a function, and not one under `if TYPE_CHECKING:`), plus the `__init__` of every package on the way.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "deepfit"


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (function and class bodies excluded)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _resolve(node: ast.Import | ast.ImportFrom, current: str, is_package: bool, modules: set[str]) -> list[str]:
    targets: list[str] = []
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            base = current.split(".") if is_package else current.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        targets = [prefix]
        for alias in node.names:  # `from pkg import submodule` imports the submodule
            if f"{prefix}.{alias.name}" in modules:
                targets.append(f"{prefix}.{alias.name}")
    own_packages = set(_parents(current))  # already being imported when `current` runs
    resolved = []
    for target in targets:
        if target in modules:
            resolved.extend(p for p in _parents(target) if p in modules and p not in own_packages)
            resolved.append(target)
    return resolved


def _graph(root: Path, imports_of, targets_of) -> dict[str, set[str]]:
    """module -> the modules that `targets_of` finds in the import statements that `imports_of` picks."""
    modules = all_modules(root)
    names = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in imports_of(tree):
            edges.update(targets_of(node, name, path.name == "__init__.py", names))
        edges.discard(name)
        graph[name] = edges
    return graph


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """module -> the package modules that importing it runs directly.

    A module's own parent packages are left out: they have already started importing when it runs, so an
    `__init__` that re-exports its submodules is no circle. An explicit `from .. import name` still counts.
    """
    return _graph(root, lambda tree: _module_level_imports(tree), _resolve)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def function_body_imports(path: Path) -> list[int]:
    """Line numbers of import statements inside functions of the file at `path`."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    lines.append(inner.lineno)
    return sorted(set(lines))


if __name__ == "__main__":
    g = import_graph()
    for component in cycles(g):
        print(len(component), component)
    total = sum(len(function_body_imports(p)) for p in all_modules().values())
    print("function-body imports in the package:", total)
    print("in learner/learner.py:", len(function_body_imports(PACKAGE_ROOT / "learner" / "learner.py")))


def _explicit_targets(node: ast.Import | ast.ImportFrom, current: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules an import statement names (the deepest existing one), without the packages on the way."""
    resolved = _resolve(node, current, is_package, modules)
    return {t for t in resolved if not any(other.startswith(t + ".") for other in resolved)}


def every_import(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """module -> every package module it names in any import: module level, `TYPE_CHECKING` and function bodies."""
    every = lambda tree: [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    return _graph(root, every, _explicit_targets)
