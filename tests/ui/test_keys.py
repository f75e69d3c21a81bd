"""pages/ui/keys.py is the one home of session-state keys: no page or pages/ui module writes a key as a literal,
no two constants share a value, and the Debugger reaches the engine only through the cached layer."""

from __future__ import annotations

import ast

from pages.ui import keys
from tests.ui.conftest import ROOT

PAGES = sorted((ROOT / "pages").rglob("*.py"))


def _literal_keys(path) -> list[str]:
    """`key="…"`, `key=f"literal…"`, `st.form("…")` and `session_state["…"]` written in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "key":
            value = node.value
            if isinstance(value, ast.JoinedStr) and value.values:
                value = value.values[0]
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append(f"{path.name}:{node.value.lineno}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "form" and node.args:
            if isinstance(node.args[0], ast.Constant):
                found.append(f"{path.name}:{node.lineno}")
        elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "session_state":
            if isinstance(node.slice, ast.Constant):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_page_writes_a_key_as_a_literal():
    offenders = [hit for path in PAGES if path.name != "keys.py" for hit in _literal_keys(path)]
    assert not offenders, f"session-state keys belong in pages/ui/keys.py: {offenders}"


def test_key_values_are_unique():
    values = [v for name, v in vars(keys).items() if name.isupper() and isinstance(v, str)]
    assert len(values) == len(set(values))


def test_the_debugger_reaches_the_engine_only_through_the_cached_layer():
    tree = ast.parse((ROOT / "pages" / "1_Debugger.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("spade_engine")]
