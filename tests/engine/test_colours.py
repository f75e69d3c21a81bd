"""spade_engine/colours.py: matplotlib's colour maps with an opacity ramp, as RGBA arrays and plotly scales."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib import colormaps

from spade_engine import colours


def test_colours_are_matplotlibs_and_opacity_ramps_with_value():
    values = np.linspace(0, 2, 9)[None, :]  # (1, 9), the top half beyond vmax
    rgba = colours.colorize(values, vmax=1.0, cmap="viridis")
    t = np.clip(values, 0, 1)
    assert np.allclose(rgba[..., :3], colormaps["viridis"](t)[..., :3])
    assert rgba[0, 0, 3] == 0.0 and rgba[0, 4, 3] == pytest.approx(0.95)
    assert np.all(np.diff(rgba[0, :5, 3]) > 0)  # more saliency, more opaque
    assert np.allclose(rgba[0, 4:], rgba[0, 4])  # clipped above vmax


def test_signed_scale_is_symmetric_and_transparent_at_zero():
    rgba = colours.colorize(np.array([[-3.0, -1.0, 0.0, 1.0, 3.0]]), vmax=2.0, signed=True)
    assert rgba[0, 2, 3] == 0.0
    assert rgba[0, 1, 3] == pytest.approx(rgba[0, 3, 3]) and rgba[0, 0, 3] == pytest.approx(0.95)
    assert np.allclose(rgba[0, 0, :3], colormaps["RdBu_r"](0.0)[:3])  # below -vmax: the blue end
    assert rgba[0, 4, 0] > rgba[0, 4, 2]  # positive is red


def test_plotly_scale_matches_colorize_at_its_stops():
    for signed in (False, True):
        scale = colours.plotly_colorscale(signed, "magma")
        positions = np.array([p for p, _ in scale])
        assert positions[0] == 0 and positions[-1] == 1 and np.all(np.diff(positions) > 0)
        parsed = np.array([[float(v) for v in re.findall(r"[\d.]+", c)] for _, c in scale])  # (P, 4)
        values = 2 * positions - 1 if signed else positions
        want = colours.colorize(values[None, :], 1.0, signed, "magma")[0] * [255, 255, 255, 1]
        assert np.allclose(parsed[:, :3], want[:, :3], atol=0.5) and np.allclose(parsed[:, 3], want[:, 3], atol=1e-3)


def test_unknown_names_get_plain_errors():
    with pytest.raises(ValueError, match="no colour map called 'infernal'"):
        colours.colorize(np.zeros((2, 2)), 1.0, cmap="infernal")
    with pytest.raises(ValueError, match="choose one of"):
        colours.palette_maps("rainbow")


def test_opacity_is_the_ramp_the_page_had_before_matplotlib():
    """The Debugger's overlays kept their opacity when the colours moved to matplotlib: the old hand-written stops
    (sequential 0 / 0.15 / 0.45 / 0.7 / 0.85 / 0.95; signed 0.95 / 0.6 / 0 / 0.6 / 0.95), linear in between."""
    t = np.array([[0.0, 0.15, 0.35, 0.55, 0.75, 1.0, 0.25]])
    assert np.allclose(colours.colorize(t, 1.0)[0, :, 3], [0.0, 0.15, 0.45, 0.7, 0.85, 0.95, 0.3])
    s = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0, 0.25]])
    assert np.allclose(colours.colorize(s, 1.0, signed=True)[0, :, 3], [0.95, 0.6, 0.0, 0.6, 0.95, 0.3])
