"""House rule: no import cycle inside spade_engine/ (the layering reads one way: a module never imports, directly or
through others, a module that imports it).

Both module-level and function-level imports count: a lazy import inside a function still makes the two modules
depend on each other (the cycles this test was written for, `distributed ⇄ protocol` and `saliency._canonical ⇄
saliency.layers`, were lazy on one side). Imports under `if TYPE_CHECKING:` do not count (annotations only).
An import names the module it reads (`from spade_engine.protocol.config import X` depends on
`spade_engine.protocol.config`; `from spade_engine import protocol` on the package `spade_engine.protocol`); the
parent packages Python runs first are not counted as edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "spade_engine"
KNOWN_CYCLES: set[frozenset[str]] = set()  # none


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file, for every module and package of spade_engine/ under `root`."""
    out = {}
    for f in sorted((root / PACKAGE).rglob("*.py")):
        parts = f.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imports(name: str, source: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The spade_engine modules that module `name` imports (module- and function-level), as keys of `modules`."""

    def known(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {m for a in node.names if (m := known(a.name))}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package the module is in
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for a in node.names:  # `from pkg import submodule` reads the submodule
                sub = f"{target}.{a.name}"
                if m := known(sub if sub in modules else target):
                    out.add(m)
    out.discard(name)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the spade_engine modules it imports."""
    modules = module_names(root)
    return {n: imports(n, f.read_text(), f.name == "__init__.py", modules) for n, f in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_detector_finds_lazy_relative_and_from_imports():
    modules = dict.fromkeys(["spade_engine.a", "spade_engine.b", "spade_engine.c", "spade_engine.pkg",
                             "spade_engine.pkg.d"], Path())  # fmt: skip
    src = (
        "import os\nfrom spade_engine import a\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from spade_engine import c\n"
        "def f():\n    from spade_engine.pkg import d\n    from . import b\n"
    )
    assert imports("spade_engine.x", src, False, modules) == {"spade_engine.a", "spade_engine.pkg.d", "spade_engine.b"}
    assert imports("spade_engine.pkg.d", "from .. import c\nfrom . import d\n", False, modules) == {"spade_engine.c"}
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]] and cycles({"a": {"b"}, "b": set()}) == []


def test_spade_engine_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["spade_engine.protocol.run"], "spade_engine/ not found or not parsed"
    found = [c for c in cycles(graph) if frozenset(c) not in KNOWN_CYCLES]
    detail = {m: sorted(graph[m] & set(c)) for c in found for m in c}
    assert not found, f"import cycles (module -> what it imports inside the cycle): {detail}"


def test_the_protocol_library_never_imports_ray():
    """Ray lives with the command line: only `spade_engine.cli` imports `spade_engine.protocol.ray`."""
    graph = import_graph()
    users = {m for m, deps in graph.items() if "spade_engine.protocol.ray" in deps}
    assert users and all(m.startswith("spade_engine.cli") for m in users), users
