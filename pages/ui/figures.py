"""Figures for the debugger: plotly charts for the page and the JSON export (the PNG panel is drawn by
`spade_engine.explain.panel`, the CSV rows by `spade_engine.explain.compare.export_rows`).

Colours come from `spade_engine.colours` (matplotlib's colour maps with an opacity ramp; a palette pairs a
sequential map for non-negative maps with a diverging one for signed maps: blue negative, transparent zero, red
positive by default), used both as the plotly colour scale and for the PNG, so the download looks like the page.
Saliency pairs share one normalisation (`shared_vmax`; symmetric around 0 for signed maps).
"""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from spade_engine.colours import base_image, plotly_colorscale, shared_vmax
from spade_engine.explain.compare import MapPair, class_name
from spade_engine.explain.panel import PATCH_COLOUR, mask_box, panel_title

__all__ = ["PATCH_COLOUR", "MapPair", "base_image", "class_name", "layer_figure", "mask_box", "overlay_figure", "prediction_figure", "report",
           "report_json", "saliency_figure", "shared_vmax"]  # fmt: skip

DENSE_COLOUR, SPADE_COLOUR = "#7f7f7f", "#d62728"


# ------------------------------------------------------------------------------------------ plotly figures


def saliency_figure(image_u8: np.ndarray, pair: MapPair, spade_label: str, mask: np.ndarray | None = None) -> go.Figure:
    """Dense and SPADE maps side by side over the sample, one colour bar, same normalisation on both sides."""
    vmax = pair.vmax
    titles = [panel_title("Dense", pair.dense_auc), panel_title(spade_label, pair.spade_auc)]
    fig = make_subplots(1, 2, subplot_titles=titles, horizontal_spacing=0.04)
    base, box = base_image(image_u8), mask_box(mask)
    for col, values in ((1, pair.dense), (2, pair.spade)):
        fig.add_trace(go.Image(z=base, hoverinfo="skip"), 1, col)
        fig.add_trace(
            go.Heatmap(z=values, coloraxis="coloraxis", hovertemplate="x %{x}, y %{y}<br>%{z:.3g}<extra></extra>"),
            1,
            col,
        )
        if box is not None:
            x0, y0, x1, y1 = box
            fig.add_shape(type="rect", x0=x0 - 0.5, y0=y0 - 0.5, x1=x1 + 0.5, y1=y1 + 0.5, row=1, col=col,
                          line=dict(color=PATCH_COLOUR, width=2, dash="dot"))  # fmt: skip
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x", constrain="domain")
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    fig.update_layout(
        coloraxis=dict(colorscale=plotly_colorscale(pair.signed, pair.cmap), cmin=-vmax if pair.signed else 0, cmax=vmax,
                       colorbar=dict(title=dict(text="signed saliency" if pair.signed else "saliency", side="right"),
                                     thickness=14, tickformat=".2~g")),
        margin=dict(l=0, r=0, t=36, b=0), height=360, plot_bgcolor="white",
    )  # fmt: skip
    return fig


def prediction_figure(dense_logits, pruned_logits, class_names: tuple[str, ...], k: int = 5) -> go.Figure:
    """Grouped bars of dense and pruned probabilities over the union of both top-k classes."""
    dense, pruned = _softmax(dense_logits), _softmax(pruned_logits)
    classes = list(dict.fromkeys([*np.argsort(-dense)[:k], *np.argsort(-pruned)[:k]]))
    classes.sort(key=lambda c: dense[c])  # horizontal bars: highest dense probability on top
    names = [class_name(class_names, c) for c in classes]
    fig = go.Figure()
    for label, probs, colour in (("SPADE", pruned, SPADE_COLOUR), ("Dense", dense, DENSE_COLOUR)):
        fig.add_bar(y=names, x=probs[classes], name=label, orientation="h", marker_color=colour,
                    text=[f"{p:.1%}" for p in probs[classes]], textposition="outside", cliponaxis=False)  # fmt: skip
    fig.update_layout(barmode="group", height=80 + 36 * len(classes), margin=dict(l=0, r=40, t=10, b=0),
                      xaxis=dict(range=[0, 1.12], tickformat=".0%", title="probability"),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", traceorder="reversed"))  # fmt: skip
    return fig


def layer_figure(
    layer_sparsity: dict[str, float], layer_error: dict[str, float], layer_target: dict[str, float] | None = None
) -> go.Figure:
    """Per-layer reached sparsity (bars, target as markers) and relative reconstruction error (log scale)."""
    names = list(layer_sparsity)
    labels = [n.removeprefix("net.") for n in names]  # the Classifier wrapper's prefix says nothing
    fig = make_subplots(2, 1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=["Sparsity reached per layer", "Relative reconstruction error ‖WX − ŴX‖² / ‖WX‖²"])  # fmt: skip
    fig.add_bar(x=labels, y=[layer_sparsity[n] for n in names], name="reached", marker_color=SPADE_COLOUR, row=1, col=1)
    if layer_target:
        fig.add_scatter(x=labels, y=[layer_target.get(n) for n in names], mode="markers", name="target",
                        marker=dict(symbol="line-ew-open", size=14, color="black"), row=1, col=1)  # fmt: skip
    errors = [max(float(layer_error.get(n, 0.0)), 1e-12) for n in names]
    fig.add_bar(x=labels, y=errors, name="error", marker_color="#1f77b4", row=2, col=1)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(type="log", row=2, col=1)
    fig.update_layout(height=520, margin=dict(l=0, r=0, t=30, b=0), showlegend=False, bargap=0.15)
    return fig


def overlay_figure(image_u8: np.ndarray, panels: list[tuple[str, np.ndarray]], bar_title: str, cols: int = 2,
                   mask: np.ndarray | None = None) -> go.Figure:  # fmt: skip
    """Maps over the sample, one shared colour scale (`shared_vmax`), optional trojan box."""
    rows = -(-len(panels) // cols)
    fig = make_subplots(
        rows, cols, subplot_titles=[t for t, _ in panels], horizontal_spacing=0.04, vertical_spacing=0.08
    )
    base, box = base_image(image_u8), mask_box(mask)
    for i, (_, values) in enumerate(panels):
        r, c = divmod(i, cols)
        fig.add_trace(go.Image(z=base, hoverinfo="skip"), r + 1, c + 1)
        fig.add_trace(go.Heatmap(z=np.clip(values, 0, None), coloraxis="coloraxis",
                                 hovertemplate="x %{x}, y %{y}<br>%{z:.3g}<extra></extra>"), r + 1, c + 1)  # fmt: skip
        if box is not None:
            fig.add_shape(type="rect", x0=box[0] - 0.5, y0=box[1] - 0.5, x1=box[2] + 0.5, y1=box[3] + 0.5,
                          row=r + 1, col=c + 1, line=dict(color=PATCH_COLOUR, width=2, dash="dot"))  # fmt: skip
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    vmax = shared_vmax(*[v for _, v in panels])
    fig.update_layout(coloraxis=dict(colorscale=plotly_colorscale(), cmin=0, cmax=vmax,
                                     colorbar=dict(title=dict(text=bar_title, side="right"), thickness=14)),
                      height=330 * rows, margin=dict(l=0, r=0, t=36, b=0), plot_bgcolor="white")  # fmt: skip
    return fig


def _softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64).ravel()
    e = np.exp(z - z.max())
    return e / e.sum()


# ---------------------------------------------------------------------------------------- numbers export


def report(settings: dict, class_names: tuple[str, ...], result, pairs: list[MapPair], target: int) -> dict:
    """Everything the panel shows, as plain JSON-able data.

    Args:
        settings: model, sample, sparsity, views, seed … (echoed as is).
        class_names: the model's class names.
        result: the engine's `PruneResult`.
        pairs: saliency maps with their AUCs.
        target: the class the maps explain.
    """
    dense, pruned = _softmax(result.dense_logits), _softmax(result.pruned_logits)
    top = lambda top5: [{"class": class_name(class_names, c), "index": c, "probability": p} for c, p in top5]  # noqa: E731
    return {
        "settings": settings,
        "target": {"index": int(target), "class": class_name(class_names, int(target))},
        "predictions": {
            "dense_top5": top(result.dense_top5), "pruned_top5": top(result.pruned_top5), "agrees": bool(result.agrees),
            "target_probability": {"dense": float(dense[target]), "pruned": float(pruned[target])},
        },
        "trojan_auc": {p.method: {"dense": p.dense_auc, "spade": p.spade_auc} for p in pairs},
        "layers": [{"layer": n, "target": result.layer_target.get(n), "sparsity": s, "reconstruction_error": result.layer_error.get(n)}
                   for n, s in result.layer_sparsity.items()],
        "timings_s": dict(result.timings),
    }  # fmt: skip


def report_json(rep: dict) -> str:
    """The report as indented JSON."""
    return json.dumps(rep, indent=2, default=float)
