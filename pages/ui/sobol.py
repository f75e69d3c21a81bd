"""Cached layer and figures of the Sobol regions page (`pages/7_Sobol_regions.py`): region maps (`st.cache_data`)
and Sobol designs, which show a progress bar and so go through `cache.long_run` (shared by all sessions, one
computation per design); the per-region shares figure."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from pages.ui import cache, figures, results
from spade_engine import sobol


@st.cache_data(show_spinner=False, max_entries=64)
def regions(sample_hash: str, kind: str, size: int, _x: torch.Tensor) -> np.ndarray:
    """Region label map (H, W): a `size x size` grid or about `size` SLIC superpixels."""
    h, w = _x.shape[-2:]
    return sobol.grid_regions(h, w, size) if kind == "grid" else sobol.superpixel_regions(_x, n_segments=size)


def sobol_run(model_key: str, variant: str, sample_hash: str, target: int, spec: tuple, n: int, perturbation: str,
              device: str, model: torch.nn.Module, x: torch.Tensor, labels: np.ndarray) -> sobol.SobolResult:  # fmt: skip
    """Sobol indices from memory, or computed now with a progress bar (`variant`: "dense" or the SPADE key)."""
    key = ("sobol", model_key, variant, sample_hash, target, spec, n, perturbation)

    def compute() -> sobol.SobolResult:
        bar = results.Bar(f"Sobol design on the {variant.split(':')[0]} network: forward passes")
        with cache.model_lock(model_key):
            result = sobol.sobol_regions(model, x, target, labels, n=n, perturbation=perturbation, device=device,
                                         progress=bar)  # fmt: skip
        bar.clear()
        return result

    return cache.long_run(key, compute)


def sobol_done(
    model_key: str, variant: str, sample_hash: str, target: int, spec: tuple, n: int, perturbation: str
) -> bool:
    """Whether these Sobol indices are already computed (the page then shows them without a click)."""
    return cache.long_run_done(("sobol", model_key, variant, sample_hash, target, spec, n, perturbation))


def shares_figure(results: dict[str, sobol.SobolResult]) -> go.Figure:
    """Per region first-order and interaction (`ST - S`) shares, stacked, for each network."""
    fig = make_subplots(1, len(results), subplot_titles=list(results), shared_yaxes=True)
    for i, res in enumerate(results.values()):
        regions_ = [f"r{k}" for k in range(res.d)]
        fig.add_bar(x=regions_, y=res.first_order, name="first order S", marker_color="#1f77b4",
                    showlegend=i == 0, row=1, col=i + 1)  # fmt: skip
        fig.add_bar(x=regions_, y=res.interaction, name="interactions ST − S", marker_color=figures.SPADE_COLOUR,
                    showlegend=i == 0, row=1, col=i + 1)  # fmt: skip
    fig.update_layout(barmode="relative", height=300, margin=dict(l=0, r=0, t=30, b=0), yaxis_title="share of Var f")
    return fig
