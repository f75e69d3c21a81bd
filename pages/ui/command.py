"""The Debugger's "run this over a folder" block: the `spade explain` command for the page's current settings."""

from __future__ import annotations

import streamlit as st

from spade_engine.cli.explain import explain_command
from spade_engine.settings import SpadeSettings


def run_over_folder(info, settings: SpadeSettings) -> str:
    """An expander with the shell command that explains a whole folder as this page does; returns the command.

    Args:
        info: the model's `ModelInfo` (a checkpoint upload gives `--checkpoint <file> --arch <arch>`).
        settings: the page's `SpadeSettings`, resolved, with its saliency methods and reduction.
    """
    upload = info.family == "checkpoint"
    command = explain_command(
        None if upload else info.name, settings,
        checkpoint=info.name if upload else None, arch=info.arch if upload else None,
    )  # fmt: skip
    with st.expander("Run this over a folder", icon=":material/terminal:"):
        st.caption("The same settings for every image of a folder, from a terminal in the project (after "
                   "`pip install -e .`). It writes an offline report (index.html), a CSV, PNG overlays and the raw "
                   "maps (.npz); files that are not images are listed and skipped.")  # fmt: skip
        st.code(command, language="bash")
    return command
