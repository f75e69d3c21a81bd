"""SPADE Debugger: the entry point and router (`streamlit run app.py`).

Pages are discovered, not listed: every `pages/<n>_<Name>.py` becomes a page titled from its file name
(`3_Neuron_explorer.py` -> "Neuron explorer"), ordered by `<n>`. `pages/1_Debugger.py` is the default page.

Study hook: with the query parameter `?participant=<id>` the app shows only `pages/<n>_Study_participant*.py`
(if such a page exists; otherwise the normal app), without the navigation menu, so a participant cannot wander
to other pages. The study page reads the id itself from `st.query_params["participant"]`.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `pages.ui` and `spade_engine` import from the repository root
    sys.path.insert(0, str(ROOT))
PAGES_DIR = ROOT / "pages"
DEFAULT_PAGE = "1_Debugger.py"
PARTICIPANT_PARAM = "participant"
PAGE_FILE = re.compile(r"^(\d+)_(.+)\.py$")


def page_title(path: Path) -> str:
    """Title from a page file name: `3_Neuron_explorer.py` -> "Neuron explorer"."""
    match = PAGE_FILE.match(path.name)
    words = (match.group(2) if match else path.stem).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def discover_pages(pages_dir: Path = PAGES_DIR) -> list[Path]:
    """Page files `pages/<n>_<Name>.py`, ordered by their number, then name."""
    found = [p for p in pages_dir.glob("[0-9]*_*.py") if PAGE_FILE.match(p.name)]
    return sorted(found, key=lambda p: (int(PAGE_FILE.match(p.name).group(1)), p.name))


def participant_page(pages: list[Path]) -> Path | None:
    """The study-participant page (`<n>_Study_participant*.py`), if one exists."""
    return next((p for p in pages if re.match(r"^\d+_Study_participant", p.name)), None)


def device_label() -> str:
    """What the engine runs on: the CUDA device's name when available, else CPU."""
    from pages.ui import cache

    device = cache.default_device()
    if device.startswith("cuda"):
        import torch

        return f"GPU · {torch.cuda.get_device_name(device)}"
    return "CPU"


THREADS_ENV = "SPADE_TORCH_THREADS"


@st.cache_resource(show_spinner=False)
def configure_process() -> str | None:
    """Once per server process, before any page runs: torch's intra-op thread count from `$SPADE_TORCH_THREADS`
    (default: torch's own). Process-wide settings are made here only, never on a request path.

    Returns:
        None, or a plain message when the variable is not a positive whole number (the default is kept).
    """
    import torch

    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        return f"{THREADS_ENV}={raw!r} is not a positive whole number; torch keeps {torch.get_num_threads()} threads."
    torch.set_num_threads(int(raw))
    return None


def main() -> None:
    """Configure the app, pick the visible pages and run the current one."""
    st.set_page_config(page_title="SPADE Debugger", layout="wide", page_icon="🔬")
    problem = configure_process()
    pages = discover_pages()
    study = participant_page(pages) if PARTICIPANT_PARAM in st.query_params else None
    if study is not None:
        current = st.navigation([st.Page(study, title=page_title(study), default=True)], position="hidden")
    else:
        # The participant page is reached only through its link (the designer makes them), not from the menu.
        listed = [p for p in pages if p != participant_page(pages)]
        entries = [st.Page(p, title=page_title(p), default=p.name == DEFAULT_PAGE) for p in listed]
        current = st.navigation(entries)
        st.sidebar.caption(f"Device: **{device_label()}**")
        if problem:
            st.sidebar.warning(problem)
    current.run()


if __name__ == "__main__":
    main()
