"""The one PNG renderer of saliency maps: overlays, colour bars, the Debugger's panel, `spade explain`'s pair
images and the study's stimuli.

Colours come from `spade_engine.colours` (matplotlib colour maps with an opacity ramp, drawn over the sample
half desaturated), so every PNG looks like the Debugger's plotly figure. A dense | SPADE pair shares one scale
(`MapPair.vmax`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spade_engine.colours import base_image, blend, colorize
from spade_engine.explain.compare import MapPair

PATCH_COLOUR = "#00e5ff"  # the trojan patch's outline
BAR_WIDTH = 14  # colour bar width in pixels, without its outline


def mask_box(mask: np.ndarray | None) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), inclusive pixel indices, of a boolean (H, W) mask; None when empty."""
    if mask is None or not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _resample(h: int, w: int) -> Image.Resampling:
    """Nearest neighbour for small images (pixels stay crisp), bilinear from 128 px."""
    return Image.Resampling.NEAREST if max(h, w) < 128 else Image.Resampling.BILINEAR


def overlay_image(
    image_u8: np.ndarray,
    values: np.ndarray,
    vmax: float,
    mask: np.ndarray | None,
    cell: int,
    signed: bool = False,
    cmap: str | None = None,
) -> Image.Image:
    """One map over the sample, scaled to `cell` px wide (nearest for small images), the patch outlined.

    Args:
        image_u8: (H, W, 3) uint8 sample; values: (H, W) map; vmax: the top of the colour scale.
        mask: (H, W) bool patch to outline, or None; cell: output width in pixels (height keeps the aspect).
        signed: diverging scale -vmax..vmax; cmap: a matplotlib colour-map name (default: the default palette's).

    Returns:
        RGB image (cell, cell * H // W).

    Raises:
        ValueError: unknown `cmap`.
    """
    rgba = colorize(values, vmax, signed, cmap)  # (H, W, 4)
    blended = blend(base_image(image_u8).astype(np.float64) / 255, rgba) * 255  # (H, W, 3)
    img = Image.fromarray(blended.round().astype(np.uint8))
    h, w = values.shape
    img = img.resize((cell, cell * h // w), _resample(h, w))
    box = mask_box(mask)
    if box is not None:
        sx, sy = img.width / w, img.height / h
        x0, y0, x1, y1 = box
        ImageDraw.Draw(img).rectangle(
            [x0 * sx, y0 * sy, (x1 + 1) * sx - 1, (y1 + 1) * sy - 1], outline=PATCH_COLOUR, width=2
        )
    return img


def colour_bar(height: int, signed: bool = False, cmap: str | None = None, width: int = BAR_WIDTH) -> Image.Image:
    """A pair's colour scale as a vertical bar over white, top = high (bottom: 0, or -vmax when signed)."""
    ramp = colorize(np.linspace(1, -1.0 if signed else 0.0, height)[:, None].repeat(width, 1), 1.0, signed, cmap)
    return Image.fromarray((blend(np.ones((height, width, 3)), ramp) * 255).round().astype(np.uint8))  # (h, w, 3)


def _labelled_bar(canvas: Image.Image, origin: tuple[int, int], height: int, pair: MapPair, font) -> None:
    """The colour bar with its outline and its values (vmax, 0, -vmax) at `origin`."""
    x, y = origin
    canvas.paste(colour_bar(height, pair.signed, pair.cmap, BAR_WIDTH + 1), (x, y))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([x, y, x + BAR_WIDTH, y + height - 1], outline="black")
    vmax = pair.vmax
    draw.text((x + 18, y - 2), f"{vmax:.2g}", fill="black", font=font)
    draw.text((x + 18, y + height - 14), f"{-vmax:.2g}" if pair.signed else "0", fill="black", font=font)
    if pair.signed:
        draw.text((x + 18, y + height // 2 - 7), "0", fill="black", font=font)


def panel_png(
    image_u8: np.ndarray,
    pairs: Sequence[MapPair],
    spade_label: str,
    header: str,
    mask: np.ndarray | None = None,
    cell: int = 256,
) -> bytes:
    """The Debugger's saliency panel as a PNG: a header, then one row per method: dense | SPADE | colour bar.

    Args:
        image_u8: (H, W, 3) uint8 sample; pairs: the maps; spade_label: the pruned network's title ("SPADE 90%").
        header: the first line; mask: (H, W) bool patch to outline; cell: each overlay's width in pixels.

    Returns:
        PNG bytes.
    """
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
            draw.text((left, top + 24), panel_title(label, auc), fill="#444444", font=small)
            canvas.paste(overlay_image(image_u8, values, pair.vmax, mask, cell, pair.signed, pair.cmap),
                         (left, top + row_head_h))  # fmt: skip
        _labelled_bar(canvas, (pad + 2 * (cell + pad), top + row_head_h), cell, pair, small)
    return to_png(canvas)


def pair_image(image_u8: np.ndarray, pair: MapPair, cell: int = 256, mask: np.ndarray | None = None) -> Image.Image:
    """One method's dense | SPADE overlays and the colour bar, no words (`spade explain`'s images/<id>/<method>.png).

    Args:
        image_u8: (H, W, 3) uint8 sample (square); pair: the maps; cell: each overlay's side in pixels.

    Returns:
        RGB image (2 * cell + 8 + 14, cell).
    """
    panels = [
        overlay_image(image_u8, m, pair.vmax, mask, cell, pair.signed, pair.cmap) for m in (pair.dense, pair.spade)
    ]
    bar = colour_bar(cell, pair.signed, pair.cmap)
    canvas = Image.new("RGB", (2 * cell + 8 + bar.width, cell), "white")
    canvas.paste(panels[0], (0, 0))
    canvas.paste(panels[1], (cell + 4, 0))
    canvas.paste(bar, (2 * cell + 8, 0))
    return canvas


def sample_image(image_u8: np.ndarray, cell: int = 256) -> Image.Image:
    """The sample alone, scaled to `cell` px as the overlays are (nearest for small images)."""
    h, w = image_u8.shape[:2]
    return Image.fromarray(image_u8).resize((cell, cell * h // w), _resample(h, w))


def heat_overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.55, cmap: str = "inferno") -> Image.Image:
    """A study stimulus: a saliency map (H, W), min-max scaled, drawn over `image` with one opacity and the
    colour map `cmap` (a matplotlib name, through `spade_engine.colours`), scaled to the image's size.

    Raises:
        ValueError: unknown `cmap`.
    """
    h = np.asarray(heat, dtype=np.float64)
    h = (h - h.min()) / max(float(h.max() - h.min()), 1e-12)
    rgb = (colorize(h, 1.0, cmap=cmap)[..., :3] * 255).astype(np.uint8)  # (H, W, 3); the map's own opacity unused
    layer = Image.fromarray(rgb).resize(image.size, Image.BILINEAR)
    return Image.blend(image.convert("RGB"), layer, alpha)


def panel_title(label: str, auc: float | None) -> str:
    """A panel's title: the network's label, with its trojan AUC when known."""
    return label if auc is None else f"{label} · trojan AUC {auc:.3f}"


def to_png(img: Image.Image) -> bytes:
    """PNG bytes of a PIL image."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()
