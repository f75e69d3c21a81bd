"""House rule: nothing under spade_engine/ imports Streamlit (the engine returns data; pages draw)."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "spade_engine"


def streamlit_imports(source: str) -> list[int]:
    """Line numbers of `import streamlit…` / `from streamlit… import …` (also nested in functions)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            lines += [node.lineno for a in node.names if a.name.split(".")[0] == "streamlit"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "streamlit":
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
            "import_module",
            "__import__",
        ):
            if (
                node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).split(".")[0] == "streamlit"
            ):
                lines.append(node.lineno)
    return lines


def test_detector_catches_every_form():
    src = "import os\nimport streamlit as st\nfrom streamlit.testing import v1\ndef f():\n    import streamlit.components\n"
    src += "importlib.import_module('streamlit')\nfrom streamlit_extras import x\n"
    assert streamlit_imports(src) == [2, 3, 5, 6]


def test_engine_never_imports_streamlit():
    files = sorted(ENGINE.rglob("*.py"))
    assert files, "spade_engine/ not found"
    offenders = {str(f.relative_to(ENGINE.parent)): streamlit_imports(f.read_text()) for f in files}
    assert not {f: lines for f, lines in offenders.items() if lines}
