"""Session state that survives page switches: widget values mirrored into plain keys, and kept uploads.

Streamlit forgets a widget's state when a page without that widget runs (widget ids include the page). Values the
user set on one page and expects on the next (the model, the sample, SPADE settings) are mirrored into plain
session-state keys (`pages/ui/keys.py`); uploaded files are kept as bytes until the user removes or replaces them.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from pages.ui import keys


def persisted(
    widget: Callable,
    key: str,
    default,
    *args,
    valid: Callable[[object], bool] = lambda v: True,
    options: list | None = None,
    **kwargs,
):
    """Render `widget` so its value survives page switches, and return the value.

    The value is mirrored into the plain session-state key `key` and handed back to the widget as its initial
    value; the widget itself uses the key `keys.WIDGET + key`.

    Args:
        widget: e.g. `st.sidebar.slider`.
        key: the persistent session-state key (`keys.MODEL`, `"debugger.sparsity"` …).
        default: initial value when nothing is stored (or the stored value is no longer `valid`).
        *args, **kwargs: passed to the widget (label, options, min/max …).
        valid: whether a stored value may still be used (e.g. it is still among the options).
        options: for index-based widgets (selectbox, radio): their options; the value is passed as `index`.

    Returns:
        The widget's value.
    """
    value = st.session_state.get(key, default)
    value = value if valid(value) else default
    wkey = keys.WIDGET + key
    if wkey in st.session_state and not valid(st.session_state[wkey]):
        del st.session_state[wkey]
    initial = {"index": options.index(value)} if options is not None else {"value": value}
    out = widget(*args, *([options] if options is not None else []), key=wkey, **initial, **kwargs)
    st.session_state[key] = out
    return out


def kept_upload(label: str, types: list[str], key: str) -> tuple[str, bytes] | None:
    """A sidebar file uploader whose file survives page switches.

    The uploader forgets its file when another page runs; the bytes are kept under `key` in session state. One
    file per key: a new upload replaces the kept one, removing the file forgets it, and `drop_upload` forgets it
    when the user picks something else instead (so a session holds at most one file per uploader).

    Args:
        label: the uploader's label.
        types: accepted file extensions, without dots.
        key: the session-state key of the kept file (`keys.CKPT_FILE`, `keys.SAMPLE_UPLOAD`).

    Returns:
        (file name, bytes), or None when no file is kept.
    """
    wkey = keys.WIDGET + key
    upload = st.sidebar.file_uploader(label, type=types, key=wkey, on_change=_forget_removed, args=(key,))
    if upload is not None:
        st.session_state[key] = (upload.name, upload.getvalue())  # replaces the previous file's bytes
    return st.session_state.get(key)


def drop_upload(key: str) -> None:
    """Forget the file kept under `key` (the user chose a shipped model or example instead)."""
    st.session_state.pop(key, None)


def _forget_removed(key: str) -> None:
    """on_change of a kept uploader: a removed file is forgotten (a page switch does not call this)."""
    if st.session_state.get(keys.WIDGET + key) is None:
        st.session_state[key] = None
