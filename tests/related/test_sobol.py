"""Sobol estimators on analytic functions and region importance on hand-built "networks"."""

import numpy as np
import pytest
import torch
from torch import nn

from spade_engine import sobol

ISHIGAMI_S = np.array([0.3139, 0.4424, 0.0])
ISHIGAMI_ST = np.array([0.5576, 0.4424, 0.2437])
TOL = 0.02  # measured max error over 10 seeds at N = 2^12: 0.007 (S), 0.0015 (ST)


def ishigami(u: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    x = -np.pi + 2 * np.pi * u  # (M, 3) uniform on [-pi, pi]
    return np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])


@pytest.mark.parametrize("seed", [0, 1])
def test_ishigami_indices(seed):
    s, st = sobol.sobol_indices(ishigami, 2**12, 3, seed=seed)
    np.testing.assert_allclose(s, ISHIGAMI_S, atol=TOL)
    np.testing.assert_allclose(st, ISHIGAMI_ST, atol=TOL)
    assert 1 - s.sum() == pytest.approx(0.244, abs=TOL)  # only x1-x3 interact


def test_estimators_are_shift_invariant():
    s, st = sobol.sobol_indices(ishigami, 2**8, 3, seed=0)
    s_shift, st_shift = sobol.sobol_indices(lambda u: ishigami(u) + 1e4, 2**8, 3, seed=0)
    np.testing.assert_allclose(s_shift, s, atol=1e-6)
    np.testing.assert_allclose(st_shift, st, atol=1e-6)


def test_additive_function_has_no_interactions():
    c = np.array([1.0, 2.0, 3.0, 0.0])
    s, st = sobol.sobol_indices(lambda u: np.cos(u) @ c, 2**12, 4, seed=0)
    np.testing.assert_allclose(st - s, 0.0, atol=0.01)
    assert s.sum() == pytest.approx(1.0, abs=0.01)
    assert s[3] == pytest.approx(0.0, abs=1e-9) and st[3] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(s[:3], c[:3] ** 2 / (c**2).sum(), atol=0.01)


def test_design_shapes_and_columns():
    a, b, ab = sobol.sobol_design(8, 3, seed=0)
    assert a.shape == b.shape == (8, 3) and ab.shape == (3, 8, 3)
    for i in range(3):
        np.testing.assert_array_equal(ab[i][:, i], b[:, i])
        np.testing.assert_array_equal(np.delete(ab[i], i, axis=1), np.delete(a, i, axis=1))
    with pytest.raises(ValueError):
        sobol.sobol_design(12, 3)
    assert sobol.sobol_cost(32, 16) == 32 * 18


def test_regions():
    lab = sobol.grid_regions(10, 7, 3)
    assert lab.shape == (10, 7) and set(np.unique(lab)) == set(range(9))
    assert sobol.n_regions(sobol.relabel(np.array([[5, 5], [9, 2]]))) == 3
    img = torch.zeros(3, 32, 32)
    img[:, :, 16:] = 1.0
    sp = sobol.superpixel_regions(img, n_segments=4)
    assert sp.shape == (32, 32) and sp.min() == 0
    assert len(np.unique(sp[:, :16])) + len(np.unique(sp[:, 16:])) >= 2
    assert not set(np.unique(sp[:, :16])) & set(np.unique(sp[:, 16:]))  # no region straddles the edge


class RegionScore(nn.Module):
    """Logit 0 = mean of region (0, 0) of a 2x2 grid; logit 1 = product of the two top regions' offsets."""

    def forward(self, x):
        tl, tr = x[:, :, :8, :8].mean((1, 2, 3)), x[:, :, :8, 8:].mean((1, 2, 3))
        return torch.stack([tl, (tl - 0.5) * (tr - 0.5)], dim=1)


@pytest.mark.parametrize("kind", ["blur", "mean"])
def test_sobol_regions_finds_the_region(kind):
    torch.manual_seed(0)
    x = torch.rand(3, 16, 16) * 0.2
    x[:, :8, :] += 0.8  # top half bright: both baselines differ from the image there
    labels = sobol.grid_regions(16, 16, 2)
    calls = []
    res = sobol.sobol_regions(
        RegionScore(),
        x,
        0,
        labels,
        n=64,
        perturbation=kind,
        batch_size=50,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (res.cost, res.cost) == (64 * 6, 64 * 6)
    assert res.first_order[0] == pytest.approx(1.0, abs=0.05)
    np.testing.assert_allclose(res.first_order[1:], 0.0, atol=0.05)
    assert abs(res.interaction_share) < 0.05
    assert res.first_order_map.shape == (16, 16) and res.first_order_map[0, 0] == res.first_order[0]


def test_sobol_regions_sees_interactions():
    x = torch.zeros(3, 16, 16)
    x[:, :8, :] = 1.0  # mean baseline 0.5: logit 1 = (m_0 / 2) * (m_1 / 2), interaction share 1/7
    res = sobol.sobol_regions(RegionScore(), x, 1, sobol.grid_regions(16, 16, 2), n=256, perturbation="mean")
    assert res.interaction_share == pytest.approx(1 / 7, abs=0.03)
    assert res.interaction[0] > 0.02 and res.interaction[1] > 0.02
    np.testing.assert_allclose(res.total_order[2:], 0.0, atol=1e-9)


def test_sobol_regions_on_tiny_cnn(tiny_model):
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    res = sobol.sobol_regions(tiny_model, x, 1, sobol.grid_regions(16, 16, 3), n=8)
    assert res.first_order.shape == res.total_order.shape == (9,)
    assert np.isfinite(res.first_order).all() and (res.total_order >= 0).all()


def test_perturb_moves_regions_between_baseline_and_image():
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.as_tensor(sobol.grid_regions(8, 8, 2))
    for kind in ("blur", "mean"):
        base = sobol.baseline_image(x, kind, sigma=2.0)
        assert base.shape == x.shape and not torch.allclose(base, x)
        out = sobol.perturb(x, base, labels, torch.tensor([[1.0, 1, 1, 1], [0.0, 0, 0, 0], [1.0, 0, 0, 0.5]]))
        torch.testing.assert_close(out[0], x)
        torch.testing.assert_close(out[1], base)
        torch.testing.assert_close(out[2][:, :4, :4], x[:, :4, :4])  # region 0 kept
        torch.testing.assert_close(out[2][:, :4, 4:], base[:, :4, 4:])  # region 1 perturbed
        torch.testing.assert_close(out[2][:, 4:, 4:], (x + base)[:, 4:, 4:] / 2)  # region 3 half-way
    torch.testing.assert_close(sobol.baseline_image(x, "mean")[:, 0, 0], x.mean((1, 2)))
