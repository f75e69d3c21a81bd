"""Colour maps for saliency maps: one path from values to colours, shared by the Debugger's plotly figures, its PNG
export and the study's stimuli.

The colours are matplotlib's colour maps (`matplotlib.colormaps`); what this module adds is the opacity: an overlay
is transparent where the map is ~0 and nearly opaque at its maximum, so the sample shows through weak saliency.
Non-negative maps run 0..vmax through a sequential map (inferno by default); signed maps (channel sum with its sign
kept) run -vmax..vmax through a diverging map (red–blue by default: blue against the class, red for it), zero
transparent. A palette pairs one of each, and the plotly colour scale is sampled from the same map, so the page,
the PNG and the stimuli agree.
"""

from __future__ import annotations

import numpy as np

# Palettes offered to the user: label -> (sequential map for >= 0 values, diverging map for signed values).
PALETTES: dict[str, tuple[str, str]] = {
    "inferno · red–blue": ("inferno", "RdBu_r"),
    "viridis · purple–orange": ("viridis", "PuOr_r"),
    "magma · cool–warm": ("magma", "coolwarm"),
    "cividis · brown–teal": ("cividis", "BrBG_r"),
}
DEFAULT_PALETTE = "inferno · red–blue"

# Opacity as a function of the position t in [0, 1] on a sequential map (0 transparent, max nearly opaque) …
_ALPHA = ((0.0, 0.0), (0.15, 0.15), (0.35, 0.45), (0.55, 0.7), (0.75, 0.85), (1.0, 0.95))
# … and of the magnitude |2t - 1| on a diverging map (zero, the middle, transparent; both ends nearly opaque).
_ALPHA_SIGNED = ((0.0, 0.0), (0.5, 0.6), (1.0, 0.95))


def palette_maps(palette: str = DEFAULT_PALETTE) -> tuple[str, str]:
    """(sequential, diverging) matplotlib colour-map names of a palette in `PALETTES`.

    Raises:
        ValueError: unknown palette (the message lists the known ones).
    """
    if palette not in PALETTES:
        raise ValueError(f"Unknown colour palette {palette!r}; choose one of: {', '.join(PALETTES)}.")
    return PALETTES[palette]


def colour_map(name: str):
    """The matplotlib colour map called `name` (e.g. "inferno", "RdBu_r").

    Raises:
        ValueError: matplotlib has no colour map of that name.
    """
    from matplotlib import colormaps

    if name not in colormaps:
        raise ValueError(f"matplotlib has no colour map called {name!r} (e.g. 'inferno', 'viridis', 'RdBu_r').")
    return colormaps[name]


def _alpha(t: np.ndarray, signed: bool) -> np.ndarray:
    stops, alphas = zip(*(_ALPHA_SIGNED if signed else _ALPHA), strict=True)
    return np.interp(np.abs(2 * t - 1) if signed else t, stops, alphas)


def colorize(values: np.ndarray, vmax: float, signed: bool = False, cmap: str | None = None) -> np.ndarray:
    """A saliency map as colours with opacity.

    Args:
        values: (H, W) map (any float dtype).
        vmax: the top of the scale: 0..vmax, or -vmax..vmax when `signed`; values beyond are clipped.
        signed: diverging scale symmetric around 0.
        cmap: matplotlib colour-map name; default the default palette's map for `signed`.

    Returns:
        (H, W, 4) float64 RGBA in [0, 1]; alpha ramps with |value| (0 at zero).

    Raises:
        ValueError: unknown `cmap`.
    """
    cmap = cmap or palette_maps()[int(signed)]
    t = np.asarray(values, dtype=np.float64) / max(vmax, 1e-12)
    t = np.clip((t + 1) / 2 if signed else t, 0.0, 1.0)
    rgba = np.array(colour_map(cmap)(t), dtype=np.float64)  # (H, W, 4), alpha 1
    rgba[..., 3] = _alpha(t, signed)
    return rgba


def plotly_colorscale(signed: bool = False, cmap: str | None = None, n: int = 21) -> list[list]:
    """The same colours and opacity as `colorize`, as a plotly colour scale `[[position, "rgba(r,g,b,a)"], …]`.

    Sampled at `n` evenly spaced positions plus the opacity ramp's corners, so plotly's linear interpolation
    between stops stays within a few levels of the matplotlib map.
    """
    corners = (
        [p for p, _ in _ALPHA]
        if not signed
        else [(1 - m) / 2 for m, _ in _ALPHA_SIGNED] + [(1 + m) / 2 for m, _ in _ALPHA_SIGNED]
    )
    positions = np.unique(np.round(np.concatenate([np.linspace(0, 1, n), corners]), 6))
    values = 2 * positions - 1 if signed else positions
    rgba = colorize(values[None, :], 1.0, signed, cmap)[0]  # (P, 4)
    return [[float(p), f"rgba({r:.0f},{g:.0f},{b:.0f},{a:.3g})"] for p, (r, g, b, a) in
            zip(positions, rgba * [255, 255, 255, 1], strict=True)]  # fmt: skip


def blend(base: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Alpha-composite coloured values over an image.

    Args:
        base: (H, W, 3) image, float in [0, 1].
        rgba: (H, W, 4) from `colorize`.

    Returns:
        (H, W, 3) float in [0, 1].
    """
    alpha = rgba[..., 3:]  # (H, W, 1)
    return base * (1 - alpha) + rgba[..., :3] * alpha


def shared_vmax(*maps: np.ndarray, q: float = 99.5, signed: bool = False) -> float:
    """One upper bound for several maps (their joint `q`-th percentile; of |values| when `signed`), so they share
    one colour scale (0..vmax, or -vmax..vmax when signed)."""
    values = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    values = np.abs(values) if signed else values
    vmax = float(np.percentile(values, q)) if values.size else 0.0
    return vmax if vmax > 0 else float(values.max(initial=0.0)) or 1.0


def base_image(image_u8: np.ndarray) -> np.ndarray:
    """The sample, half desaturated and slightly dimmed, as the backdrop of an overlay (H, W, 3) uint8."""
    rgb = image_u8.astype(np.float64)
    grey = rgb.mean(axis=-1, keepdims=True)
    return np.clip((0.5 * rgb + 0.5 * grey) * 0.85, 0, 255).astype(np.uint8)
