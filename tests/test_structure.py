"""The shape of the blurface package, read from its source: no import goes round in a circle.

The graph is built statically (``ast``, nothing imported), so a circle is found even where
today's import order happens to work. Every ``import`` and ``from ... import`` counts,
at module level and inside functions alike: a function-level import only delays the
circle to the first call, and the modules still cannot be understood, tested or split
one without the other. Only imports under ``if TYPE_CHECKING:`` are left out: they never
run. Importing a submodule also runs its package's ``__init__``; that implicit step is
not an edge (a package that re-exports its submodules would otherwise be a circle with
each of them), but ``from . import name`` of a name defined in ``__init__`` is.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "blurface"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """``{"blurface.media.decode": path, "blurface.media": .../__init__.py, ...}``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree`` except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: {blurface modules it imports}}``, relative imports resolved."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    anchor = ".".join(base + ([node.module] if node.module else []))
                else:
                    anchor = node.module or ""
                targets = []
                for alias in node.names:
                    if f"{anchor}.{alias.name}" in modules:  # from . import submodule
                        targets.append(f"{anchor}.{alias.name}")
                    else:  # from module import name
                        targets.append(anchor)
            for target in targets:
                # ``import a.b.c`` runs a.b.c; keep the longest prefix that is ours.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected group of modules, as ``[a, b, ..., a]`` (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_circle_in(graph, group) for group in groups]


def _circle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest circle through the group's first module, staying inside the group (breadth first)."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"no circle in the strongly connected group {sorted(group)}")


def test_the_package_import_graph_has_no_circle() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles in blurface (each module imports the next):\n" + "\n".join(
        "  " + " -> ".join(circle) for circle in found
    )


def test_no_module_imports_another_modules_private_name() -> None:
    """Shared helpers get public names (the media modules share theirs through ``media/common.py``);
    a package's ``__init__`` re-exports no private name."""
    modules = module_names()
    found = []
    for name, path in modules.items():
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("blurface")):
                found += [f"{name}: from {'.' * node.level}{node.module or ''} import {alias.name}"
                          for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_the_graph_sees_relative_function_level_and_circular_imports(tmp_path: Path) -> None:
    """The reader itself: a circle made of a relative import and one inside a function is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import A\n")
    (pkg / "a.py").write_text("from . import b\nA = 1\n")
    (pkg / "b.py").write_text("def f():\n    from .sub.c import C\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nfrom ..a import A\nC = A\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n")
    graph = import_graph(pkg)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a"},
        "pkg.d": set(),
    }
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
