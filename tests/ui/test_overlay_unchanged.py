"""The PNG export and the study stimuli look as they did before the colour maps moved to matplotlib.

`data/panel_before.png` and `data/stimulus_overlay_before.png` were rendered from these inputs by the code before
the change (pages/ui/figures.py with its hand-written inferno and red–blue stops; study/render.py with matplotlib's
inferno); spade_engine/explain/panel.py draws both now. The stimuli must be pixel-identical (same map, same
blend); the panel may differ where the old stops only approximated inferno and RdBu, by at most a few levels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spade_engine import colours
from spade_engine.explain import panel
from spade_engine.explain.compare import MapPair

DATA = Path(__file__).parent / "data"


def _inputs():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    image = np.stack([xx, yy, 1 - xx * yy], -1) * 200 + rng.integers(0, 55, (48, 48, 3))
    image_u8 = image.astype(np.uint8)  # (48, 48, 3)
    blob = np.exp(-((xx - 0.3) ** 2 + (yy - 0.6) ** 2) / 0.02)
    absolute = (blob + 0.3 * rng.random((48, 48))).astype(np.float32)  # (48, 48) >= 0
    other = np.exp(-((xx - 0.7) ** 2 + (yy - 0.3) ** 2) / 0.03)
    signed = (blob - other + 0.2 * rng.normal(size=(48, 48))).astype(np.float32)  # (48, 48), both signs
    mask = np.zeros((48, 48), bool)
    mask[30:36, 10:16] = True
    return image_u8, absolute, signed, mask


def _panel(palette: str = colours.DEFAULT_PALETTE) -> np.ndarray:
    image_u8, absolute, signed, mask = _inputs()
    pairs = [
        MapPair("Saliency", absolute, 1.3 * absolute, 0.6, 0.9, palette=palette),
        MapPair("LRP", signed, -0.5 * signed, reduction="signed", palette=palette),
    ]
    png = panel.panel_png(image_u8, pairs, "SPADE 90%", "golden panel", mask, cell=128)
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


def _panel_difference(palette: str) -> np.ndarray:
    """Per-pixel largest channel difference to the stored panel, over its non-white pixels."""
    before = np.asarray(Image.open(DATA / "panel_before.png")).astype(int)
    now = _panel(palette)
    assert now.shape == before.shape  # same layout
    return np.abs(now - before).max(-1)[before.min(-1) < 250]


def test_png_export_looks_as_before():
    diff = _panel_difference(colours.DEFAULT_PALETTE)
    assert np.median(diff) <= 2 and np.percentile(diff, 99) <= 30 and diff.max() <= 40


@pytest.mark.parametrize("palette", [p for p in colours.PALETTES if p != colours.DEFAULT_PALETTE])
def test_other_palettes_are_visibly_different(palette):
    """The tolerance above is tight enough to tell another colour map from the default one."""
    assert np.percentile(_panel_difference(palette), 99) > 50


def test_study_stimulus_overlay_is_pixel_identical():
    image_u8, absolute, _, _ = _inputs()
    img = Image.fromarray(image_u8).resize((256, 256), Image.NEAREST)
    before = np.asarray(Image.open(DATA / "stimulus_overlay_before.png"))
    assert np.array_equal(np.asarray(panel.heat_overlay(img, absolute)), before)
    other = np.asarray(panel.heat_overlay(img, absolute, cmap="viridis"))
    assert np.abs(other.astype(int) - before).max() > 50  # the colour-map choice is used
