"""Cached layer of the Benchmarks page: stored protocol results and small live runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages.ui import cache
from spade_engine import protocol

RESULTS_DIR = protocol.RESULTS_DIR
NEEDED = ("kind", "sample", "method", "column")  # the protocol's row keys


def results_file(model: str, kind: str = "protocol") -> Path:
    """Where `spade protocol --store` ("protocol") or `benchmarks/protocol_ablation.py` ("ablation")
    writes the model's rows."""
    return RESULTS_DIR / f"{model}_{kind}.csv"


@st.cache_data(show_spinner=False)
def stored_results(path: str, mtime: float) -> pd.DataFrame:
    """The rows of a stored run (`mtime` in the key: a rewritten file is re-read)."""
    return pd.read_csv(path)


def latest(model: str, kind: str = "protocol") -> pd.DataFrame | None:
    """The model's stored rows of `kind`; while only an unfinished run's rows are stored
    (`<file>.partial.csv`, committed as a long run goes), those (`is_partial` tells); None when neither exists."""
    path = results_file(model, kind)
    if not path.exists():
        path = protocol.partial_path(path)
    if not path.exists() or not path.stat().st_size:
        return None
    return stored_results(str(path), path.stat().st_mtime)


def is_partial(model: str, kind: str = "protocol") -> bool:
    """Whether `latest(model, kind)` is an unfinished run's rows (no finished file, a partial one)."""
    path = results_file(model, kind)
    return not path.exists() and protocol.partial_path(path).exists()


def read_run(path: str) -> pd.DataFrame:
    """The rows of a CSV written by `spade protocol --out` (or its `.partial.csv` while it runs).

    Only files in the stored-results folder or under the server's data root (`$SPADE_DATA_ROOT`, checked
    against traversal and symbolic links by `sparse_layer.io.resolve_data_folder`) are read: the page must not
    read arbitrary server files.

    Raises:
        ValueError: outside those folders, no such file, not a CSV, or not protocol rows; the message says which.
    """
    file = _allowed_file(path)
    if not file.is_file():
        raise ValueError(f"No file at {file}.")
    try:
        df = stored_results(str(file), file.stat().st_mtime)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{file.name} is not a readable CSV file ({e}).") from e
    missing = [c for c in NEEDED if c not in df]
    if missing or not any(m in df for m in protocol.LABELS):
        raise ValueError(f"{file.name} does not hold protocol rows (`spade protocol --out` writes them): it lacks "
                         f"{', '.join(missing) or 'every metric column'}.")  # fmt: skip
    return df


def describe(model: str, df: pd.DataFrame, kind: str = "protocol") -> str:
    """One line on a stored run: its file, samples per metric and (when stored beside it) its SPADE settings;
    an unfinished run says so first."""
    path = results_file(model, kind)
    if is_partial(model, kind):
        return "Unfinished run (the rows stored so far; figures will change): " + describe_file(
            protocol.partial_path(path), df
        )
    return describe_file(path, df)


def describe_file(path: Path, df: pd.DataFrame) -> str:
    """`describe` for a run at any path (its settings JSON beside it, when there is one)."""
    n = df.groupby("kind")["sample"].nunique().to_dict()
    text = f"{path.name}: " + ", ".join(f"{v} {k} samples" for k, v in n.items())
    s = protocol.load_settings(path)
    if s:
        text += (
            f"; SPADE at {s['sparsity']:.0%} sparsity per layer"
            + (f" ({s['calibration']} calibration)" if s.get("calibration", "dense") != "dense" else "")
            + f", {s['n_aug']} calibration views "
            f"(crops ≥ {s['crop_min']:g} of the image); run {s['date']}, {s['seconds'] / 60:.0f} min"
        )
        text += "; attributions " + s.get(
            "attribution", "at the [0, 1] pixels with black baselines and Σ_c |A_c| maps (runs before 2026-11-30)"
        )
        if "exact" in s:
            text += f"; SPADE-exact: {s['exact']}"
    return text


def live_run(model: str, samples: int, methods: list[str], columns: list[str], real: bool, progress) -> pd.DataFrame:
    """A small protocol run now on the shared model (under its lock): `samples` per metric, 32 views.

    Args:
        model: a shipped model's name; real: whether it is a real network (no trojan samples, photos only).
        methods, columns: saliency methods and protocol columns ("Dense", "SPADE-sweep" …).
        progress: `progress(phase, done, total)`.

    Returns:
        The run's rows. Raises FileNotFoundError when a column needs a tuned profile that is missing.
    """
    device = cache.default_device()
    cfg = protocol.ProtocolConfig(model, 0 if real else samples, samples, methods=tuple(methods),
                                  columns=tuple(columns), n_aug=32, device=device)  # fmt: skip
    loaded = cache.load_model(model, device)
    with cache.model_lock(model):
        return protocol.run_protocol(cfg, loaded.model, progress)


def difficulty_figure(summary: pd.DataFrame):
    """Bars of the mean dense trojan AUC per scene variant (`testbed.difficulty.table`), with the paper's
    dense average (91.0%) and the testbed target (93%) as lines."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=list(summary.index), y=summary["mean"], text=[f"{v:.1f}%" for v in summary["mean"]],
                           marker_color="#4c78a8"))  # fmt: skip
    fig.add_hline(y=91.0, line_dash="dot", annotation_text="paper, dense (ResNet-50, ImageNet)")
    fig.add_hline(y=93.0, line_dash="dash", line_color="grey", annotation_text="testbed target")
    fig.update_layout(yaxis_title="dense trojan AUC (%)", yaxis_range=[85, 100], height=320, margin=dict(t=20))
    return fig


def _allowed_file(path: str) -> Path:
    """`path` as a file in `RESULTS_DIR` or under the data root; ValueError (plain words) anywhere else."""
    from spade_engine.sparse_layer.io import DataInputError, data_root, resolve_data_folder

    given = Path(path.strip())
    results = Path(RESULTS_DIR).resolve()
    candidate = given if given.is_absolute() else results / given
    if ".." not in given.parts and not candidate.is_symlink() and candidate.resolve().parent == results:
        return candidate
    if data_root() is None:
        raise ValueError(f"Only files in {results} can be opened here; the server sets no SPADE_DATA_ROOT for "
                         "other folders.")  # fmt: skip
    try:
        folder = resolve_data_folder(str(given.parent))
    except DataInputError as e:
        raise ValueError(str(e)) from None
    file = folder / given.name
    if file.is_symlink():
        raise ValueError(f"{given.name} is a symbolic link, which is not followed.")
    return file
