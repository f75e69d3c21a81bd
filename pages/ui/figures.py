"""Figures for the debugger: plotly charts for the page, a PIL-composed PNG of the panel, CSV/JSON exports.

Colours come from `spade_engine.colours` (matplotlib's colour maps with an opacity ramp; a palette pairs a
sequential map for non-negative maps with a diverging one for signed maps: blue negative, transparent zero, red
positive by default), used both as the plotly colour scale and for the PNG, so the download looks like the page.
Saliency pairs share one normalisation (`shared_vmax`; symmetric around 0 for signed maps).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from plotly.subplots import make_subplots

from spade_engine.colours import (
    DEFAULT_PALETTE,
    base_image,
    blend,
    colorize,
    palette_maps,
    plotly_colorscale,
    shared_vmax,
)

DENSE_COLOUR, SPADE_COLOUR, PATCH_COLOUR = "#7f7f7f", "#d62728", "#00e5ff"


@dataclass(frozen=True)
class MapPair:
    """One saliency method's dense and SPADE maps (H, W) with their trojan AUCs (None when unknown)."""

    method: str
    dense: np.ndarray
    spade: np.ndarray
    dense_auc: float | None = None
    spade_auc: float | None = None
    reduction: str = "absolute"  # "signed": a diverging colour scale symmetric around 0
    palette: str = DEFAULT_PALETTE  # a key of `spade_engine.colours.PALETTES`

    @property
    def signed(self) -> bool:
        return self.reduction == "signed"

    @property
    def cmap(self) -> str:
        """The matplotlib colour map of this pair: the palette's diverging map when signed, else its sequential."""
        return palette_maps(self.palette)[int(self.signed)]

    @property
    def vmax(self) -> float:
        return shared_vmax(self.dense, self.spade, signed=self.signed)


def mask_box(mask: np.ndarray | None) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), inclusive pixel indices, of a boolean mask."""
    if mask is None or not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


# ------------------------------------------------------------------------------------------ plotly figures


def saliency_figure(image_u8: np.ndarray, pair: MapPair, spade_label: str, mask: np.ndarray | None = None) -> go.Figure:
    """Dense and SPADE maps side by side over the sample, one colour bar, same normalisation on both sides."""
    vmax = pair.vmax
    titles = [_panel_title("Dense", pair.dense_auc), _panel_title(spade_label, pair.spade_auc)]
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


def _panel_title(label: str, auc: float | None) -> str:
    return label if auc is None else f"{label} · trojan AUC {auc:.3f}"


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


def _softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64).ravel()
    e = np.exp(z - z.max())
    return e / e.sum()


def class_name(class_names: tuple[str, ...], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else f"class {index}"


# ------------------------------------------------------------------------------------------- PNG export


def panel_png(
    image_u8: np.ndarray,
    pairs: list[MapPair],
    spade_label: str,
    header: str,
    mask: np.ndarray | None = None,
    cell: int = 256,
) -> bytes:
    """The saliency panel as a PNG: one row per method, dense | SPADE | colour bar, composed with PIL."""
    big, font, small = _font(18), _font(16), _font(14)
    pad, head_h, row_head_h, bar_w = 12, 40, 48, 70
    width = max(2 * cell + bar_w + 4 * pad, int(big.getlength(header)) + 2 * pad)
    row_h = row_head_h + cell + pad
    canvas = Image.new("RGB", (width, head_h + len(pairs) * row_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad), header, fill="black", font=big)
    for i, pair in enumerate(pairs):
        top = head_h + i * row_h
        draw.text((pad, top), pair.method, fill="black", font=font)
        for j, (label, values, auc) in enumerate(
            (("Dense", pair.dense, pair.dense_auc), (spade_label, pair.spade, pair.spade_auc))
        ):
            left = pad + j * (cell + pad)
            draw.text((left, top + 24), _panel_title(label, auc), fill="#444444", font=small)
            canvas.paste(overlay_image(image_u8, values, pair.vmax, mask, cell, pair.signed, pair.cmap),
                         (left, top + row_head_h))  # fmt: skip
        _colour_bar(draw, (pad + 2 * (cell + pad), top + row_head_h), cell, pair.vmax, small, pair.signed, pair.cmap)
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def overlay_image(
    image_u8: np.ndarray,
    values: np.ndarray,
    vmax: float,
    mask: np.ndarray | None,
    cell: int,
    signed: bool = False,
    cmap: str | None = None,
) -> Image.Image:
    """One map over the sample, scaled to `cell` px (nearest for small images), patch outlined; `cmap` is a
    matplotlib colour-map name (default: the default palette's)."""
    rgba = colorize(values, vmax, signed, cmap)  # (H, W, 4)
    blended = blend(base_image(image_u8).astype(np.float64) / 255, rgba) * 255  # (H, W, 3)
    img = Image.fromarray(blended.round().astype(np.uint8))
    h, w = values.shape
    resample = Image.Resampling.NEAREST if max(h, w) < 128 else Image.Resampling.BILINEAR
    img = img.resize((cell, cell * h // w), resample)
    box = mask_box(mask)
    if box is not None:
        sx, sy = img.width / w, img.height / h
        x0, y0, x1, y1 = box
        ImageDraw.Draw(img).rectangle(
            [x0 * sx, y0 * sy, (x1 + 1) * sx - 1, (y1 + 1) * sy - 1], outline=PATCH_COLOUR, width=2
        )
    return img


def _colour_bar(
    draw: ImageDraw.ImageDraw,
    origin: tuple[int, int],
    height: int,
    vmax: float,
    font,
    signed: bool = False,
    cmap: str | None = None,
) -> None:
    x, y = origin
    low = -1.0 if signed else 0.0
    ramp = colorize(np.linspace(1, low, height)[:, None], 1.0, signed, cmap)  # (height, 1, 4), top = high
    for r in range(height):
        rgb = tuple(int(round(255 * (1 - ramp[r, 0, 3] + ramp[r, 0, c] * ramp[r, 0, 3]))) for c in range(3))
        draw.line([(x, y + r), (x + 14, y + r)], fill=rgb)
    draw.rectangle([x, y, x + 14, y + height - 1], outline="black")
    draw.text((x + 18, y - 2), f"{vmax:.2g}", fill="black", font=font)
    draw.text((x + 18, y + height - 14), f"{-vmax:.2g}" if signed else "0", fill="black", font=font)
    if signed:
        draw.text((x + 18, y + height // 2 - 7), "0", fill="black", font=font)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


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


def report_csv(rep: dict) -> str:
    """The report as one tidy table: section, item, variant, value."""
    rows = [("setting", k, "", v) for k, v in rep["settings"].items()]
    for variant in ("dense", "pruned"):
        rows += [
            (f"top5_{variant}", e["class"], variant, e["probability"]) for e in rep["predictions"][f"{variant}_top5"]
        ]
    rows += [("trojan_auc", m, v, a) for m, aucs in rep["trojan_auc"].items() for v, a in aucs.items()]
    for layer in rep["layers"]:
        rows += [("layer_sparsity", layer["layer"], "spade", layer["sparsity"]),
                 ("layer_error", layer["layer"], "spade", layer["reconstruction_error"])]  # fmt: skip
    rows += [("timing_s", k, "", v) for k, v in rep["timings_s"].items()]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "item", "variant", "value"])
    writer.writerows(("" if v is None else v for v in row) for row in rows)
    return out.getvalue()


def report_json(rep: dict) -> str:
    """The report as indented JSON."""
    return json.dumps(rep, indent=2, default=float)
