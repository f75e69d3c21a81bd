"""Plotly figures of protocol rows for the Benchmarks page: per-method bars with 95% intervals, and each column's
paired difference to a reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from spade_engine import metrics
from spade_engine.protocol.tables import LABELS, column_order, paired_stats


def figure(df: pd.DataFrame, metric: str = "auc"):
    """Grouped bar chart (methods x columns) of one metric's means with 95% CIs, for the Benchmarks page."""
    import plotly.graph_objects as go

    fig = go.Figure()
    sub = df.dropna(subset=[metric]) if metric in df else df.iloc[:0]
    for col in column_order(sub):
        g = sub[sub["column"] == col].groupby("method", sort=False)[metric]
        stats = {m: metrics.mean_ci(v.to_numpy(), bounded=True) for m, v in g}
        names = list(stats)
        means = np.array([stats[m][0] for m in names]) * 100
        fig.add_bar(
            name=col,
            x=names,
            y=means,
            error_y=metrics.error_bars(means, [stats[m][1] * 100 for m in names], [stats[m][2] * 100 for m in names]),
        )
    fig.update_layout(
        barmode="group",
        yaxis_title=LABELS.get(metric, metric),
        legend_title="network",
        margin=dict(t=30, b=10),
        height=420,
    )
    return fig


def summary_figure(
    df: pd.DataFrame, reference: str = "Dense", metrics_: Sequence[str] = ("auc", "insertion", "deletion")
):
    """One panel per metric: each column's paired difference to `reference` (points; average over methods, 95%
    CI). Green where the column does better than the reference (higher AUC / insertion, lower deletion)."""
    from plotly.subplots import make_subplots

    present = [m for m in metrics_ if m in df and not df[m].isna().all()]
    fig = make_subplots(rows=1, cols=max(len(present), 1), subplot_titles=[LABELS[m] for m in present])
    for i, metric in enumerate(present, start=1):
        stats = paired_stats(df, metric, reference).get("average", {})
        cols = list(stats)
        means = np.array([stats[c][0] for c in cols]) * 100
        better = -means if metric == "deletion" else means
        fig.add_bar(
            x=cols, y=means, row=1, col=i, showlegend=False,
            marker_color=["#2ca02c" if b > 0 else "#d62728" for b in better],
            error_y=metrics.error_bars(means, [stats[c][1] * 100 for c in cols], [stats[c][2] * 100 for c in cols]),
        )  # fmt: skip
        fig.update_yaxes(title_text=f"Δ vs {reference} (points)" if i == 1 else None, zeroline=True, row=1, col=i)
    fig.update_layout(margin=dict(t=40, b=10), height=440)
    return fig
