"""Plotly figures of study results: agreement per condition with 95% Wilson intervals, response times."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from spade_engine.metrics import error_bars
from spade_engine.study.design import CONDITIONS


def _title(condition: str) -> str:
    return CONDITIONS[condition].title if condition in CONDITIONS else condition


def agreement_figure(summary: pd.DataFrame) -> go.Figure:
    """Bars of agreement with the reference answer (with 95% Wilson intervals) and of the undecided rate.

    Args:
        summary: `stats.condition_summary(...)`.
    """
    names = [_title(c) for c in summary["condition"]]
    fig = go.Figure()
    fig.add_bar(
        name="Agreement with reference", x=names, y=summary["agreement"], marker_color="#1f77b4",
        error_y=error_bars(summary["agreement"], summary["ci_low"], summary["ci_high"]),
        text=[f"{a:.0%} (n={n})" for a, n in zip(summary["agreement"], summary["n"], strict=False)], textposition="inside",
    )  # fmt: skip
    fig.add_bar(name="Undecided", x=names, y=summary["undecided_rate"], marker_color="#bbbbbb")
    fig.add_hline(y=0.5, line_dash="dot", line_color="grey", annotation_text="chance")
    fig.update_layout(barmode="group", yaxis={"range": [0, 1], "tickformat": ".0%"}, height=380,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"})  # fmt: skip
    return fig


def response_time_figure(df: pd.DataFrame) -> go.Figure:
    """Box plots of response times (seconds) per condition.

    Args:
        df: `stats.answers_frame(...)`.
    """
    fig = go.Figure()
    for cond in sorted(df["condition"].unique()):
        rt = df.loc[df["condition"] == cond, "response_ms"].dropna() / 1000
        fig.add_box(y=rt, name=_title(cond), boxpoints="all", jitter=0.4)
    fig.update_layout(yaxis_title="Response time (s)", showlegend=False, height=340,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10})  # fmt: skip
    return fig
