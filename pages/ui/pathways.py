"""Cached layer and figures of the Critical pathways page (`pages/6_Critical_pathways.py`): the pathway of one
sample and class (`st.cache_data`, bounded), the kept share per layer and the output-vs-size curve."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
import torch

from pages.ui import cache, figures
from spade_engine import pathways


@st.cache_data(show_spinner="Tracing the critical pathway…", max_entries=64)
def pathway(model_key: str, sample_hash: str, target: int, keep: float, granularity: str, selection: str,
            _model: torch.nn.Module, _x: torch.Tensor):  # fmt: skip
    """(PathwaySummary, |pathway gradient| map (H, W), |plain gradient| map (H, W)) for one sample."""
    with cache.model_lock(model_key):
        summary = pathways.pathway_summary(_model, _x, target, keep, granularity, selection)
        path = pathways.critical_pathway(_model, _x, target, keep, granularity, selection)
        grad = pathways.pathway_gradient(_model, _x, target, pathway=path)
        plain = pathways.pathway_gradient(_model, _x, target, keep=1.0)
    return summary, grad[0].abs().sum(0).numpy(), plain[0].abs().sum(0).numpy()


def layers_figure(s: pathways.PathwaySummary) -> go.Figure:
    """Kept fraction of neurons per ReLU call (bars; kept / total in the hover)."""
    text = [f"{k} / {n}" for k, n in zip(s.kept, s.sizes, strict=True)]
    fig = go.Figure(go.Bar(x=list(s.names), y=s.fractions, text=text, textposition="none", marker_color=figures.SPADE_COLOUR,
                           hovertemplate="%{x}<br>%{y:.1%} kept (%{text})<extra></extra>"))  # fmt: skip
    fig.update_layout(yaxis=dict(title="neurons kept", tickformat=".0%"), height=320, margin=dict(l=0, r=0, t=10, b=0))
    return fig


def curve_figure(s: pathways.PathwaySummary) -> go.Figure:
    """Target logit of the gated network (relative to the dense one) vs the pathway size."""
    colours = ["#2ca02c" if a else figures.SPADE_COLOUR for a in s.curve_agrees]
    fig = go.Figure(go.Scatter(x=s.curve_keep, y=s.curve_preserved, mode="lines+markers", marker_color=colours,
                               customdata=s.curve_logit, hovertemplate="keep %{x:.0%}<br>logit %{customdata:.3g}"
                               " (%{y:.0%} of dense)<extra></extra>"))  # fmt: skip
    fig.add_vline(x=s.keep, line_dash="dot")
    fig.update_layout(xaxis=dict(title="pathway size (fraction of neurons kept)", tickformat=".0%", type="log"),
                      yaxis=dict(title="logit / dense logit", tickformat=".0%"), height=320,
                      margin=dict(l=0, r=0, t=10, b=0))  # fmt: skip
    return fig
