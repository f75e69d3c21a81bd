"""Cached layer of the Benchmarks page: stored protocol results and small live runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from spade_engine import protocol

RESULTS_DIR = protocol.RESULTS_DIR
MODEL = "benchmarks.model"
METHODS = "benchmarks.methods"
COLUMNS = "benchmarks.columns"
SAMPLES = "benchmarks.samples"
LIVE = "benchmarks.live"  # the last live run's rows


def results_file(model: str) -> Path:
    """Where `benchmarks/paper_tables.py` writes the model's protocol rows."""
    return RESULTS_DIR / f"{model}_protocol.csv"


@st.cache_data(show_spinner=False)
def stored_results(path: str, mtime: float) -> pd.DataFrame:
    """The rows of a stored run (`mtime` in the key: a rewritten file is re-read)."""
    return pd.read_csv(path)


def latest(model: str) -> pd.DataFrame | None:
    path = results_file(model)
    return stored_results(str(path), path.stat().st_mtime) if path.exists() else None
