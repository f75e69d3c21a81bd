"""Metrics on hand-made maps and a hand-built model, and the cross-check against quantus 0.6.0."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score
from torch import nn

from spade_engine import metrics
from spade_engine.metrics import (
    deletion_auc,
    insertion_auc,
    mean_ci,
    perturbation_curve,
    pointing_game,
    relevance_rank_accuracy,
    trojan_auc,
)

H = W = 12  # H * W divisible by 3: quantus steps over C*H*W entries but asserts steps divide H*W
REGION = (slice(3, 8), slice(4, 9))
QUANTUS_STEPS = 36  # 4 pixels = 12 (C, H, W) entries per step


@pytest.fixture
def mask() -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[REGION] = True
    return m


def test_trojan_auc_on_hand_made_maps(mask):
    rng = np.random.default_rng(0)
    perfect = mask + 0.1 * rng.random((H, W))
    assert trojan_auc(perfect, mask) == 1.0
    assert trojan_auc(-perfect, mask) == 0.0
    assert trojan_auc(mask.astype(float), mask) == 1.0  # two-level map, ties inside each level
    assert trojan_auc(np.full((H, W), 3.0), mask) == 0.5
    noisy = rng.integers(0, 4, size=(H, W)).astype(float) + mask  # many ties across classes
    assert trojan_auc(noisy, mask) == pytest.approx(roc_auc_score(mask.ravel(), noisy.ravel()))


def test_trojan_auc_rejects_degenerate_masks(mask):
    with pytest.raises(ValueError):
        trojan_auc(np.ones((H, W)), np.ones((H, W), dtype=bool))
    with pytest.raises(ValueError):
        trojan_auc(np.ones((H, W)), mask[:-1])


def test_pointing_game(mask):
    sal = np.zeros((H, W))
    sal[5, 7] = 1.0
    assert pointing_game(sal, mask)
    sal[0, 0] = 2.0
    assert not pointing_game(sal, mask)
    assert not pointing_game(np.ones((H, W)), mask)  # a constant map is a miss
    plateau = np.zeros((H, W))
    plateau[3:6, 4] = 1.0  # three maximal pixels inside, one outside: mostly inside
    plateau[0, 0] = 1.0
    assert pointing_game(plateau, mask)
    plateau[0, 1:3] = 1.0  # now half inside, half outside
    assert not pointing_game(plateau, mask)


def test_relevance_rank_accuracy(mask):
    assert relevance_rank_accuracy(mask + 0.0, mask) == 1.0
    assert relevance_rank_accuracy(-(mask + 0.0), mask) == 0.0
    assert relevance_rank_accuracy(np.ones((H, W)), mask) == pytest.approx(mask.mean())
    part = np.zeros((H, W))
    part[3:5, 4:9] = 1.0  # 10 of the 25 region pixels on top, then ties everywhere else
    expected = (10 + 15 * 15 / (H * W - 10)) / 25
    assert relevance_rank_accuracy(part, mask) == pytest.approx(expected)


def test_mean_ci_is_a_t_interval():
    values = [0.2, 0.4, 0.9, 0.5, 0.6]
    mean, lo, hi = mean_ci(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(0.52) and (lo, hi) == pytest.approx(ref)
    assert mean_ci([0.3]) == (0.3, 0.3, 0.3)
    assert mean_ci([0.1, float("nan"), 0.3])[0] == pytest.approx(0.2)


def test_bounded_scores_get_a_logit_interval_inside_the_unit_interval():
    """AUC-like scores in [0, 1]: the t-interval of three values near 1 passes 1; the logit one stays inside and
    is asymmetric, and far from the bounds with many samples it is the t-interval to first order."""
    from spade_engine.metrics import logit_mean_ci

    near_one = [0.95, 0.99, 0.997]
    assert mean_ci(near_one)[2] > 1.0
    mean, lo, hi = mean_ci(near_one, bounded=True)
    assert 0.0 <= lo < mean < hi <= 1.0 and hi - mean < mean - lo
    mid = np.random.default_rng(0).uniform(0.4, 0.6, 400)
    np.testing.assert_allclose(mean_ci(mid, bounded=True), mean_ci(mid), atol=1e-3)
    assert mean_ci([0.9, 0.9, 0.9], bounded=True) == pytest.approx((0.9, 0.9, 0.9))  # no spread
    assert mean_ci([0.0, 1.0, 1.0], bounded=True)[1:] == pytest.approx(mean_ci([0.0, 1.0, 1.0])[1:])  # Wilson
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        logit_mean_ci(np.array([0.5, 1.2]))


def test_mean_ci_of_hits_is_wilson_and_stays_in_unit_interval():
    z2 = stats.norm.ppf(0.975) ** 2
    assert mean_ci([0.0] * 10) == pytest.approx((0.0, 0.0, z2 / (10 + z2)))  # Wilson's closed form at 0 hits
    mean, lo, hi = mean_ci([1.0] * 99 + [0.0])
    assert mean == 0.99 and lo == pytest.approx(0.9455, abs=1e-4) and hi == pytest.approx(0.9982, abs=1e-4)
    assert mean_ci([1.0] * 100)[2] == pytest.approx(1.0)


# --------------------------------------------------------------------------- insertion / deletion


class TextureModel(nn.Module):
    """Class 1's logit measures a checkerboard texture inside REGION; nothing outside matters.

    Full texture: logit +5; blurred or deleted (black): about -5. Class 0's logit is 0.
    """

    def __init__(self):
        super().__init__()
        sign = torch.zeros(1, 1, H, W)
        checker = (torch.arange(H)[:, None] + torch.arange(W)[None, :]) % 2 * 2.0 - 1.0
        sign[..., REGION[0], REGION[1]] = checker[REGION]
        self.register_buffer("sign", sign)
        self.n = float((sign != 0).sum() * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = ((x - 0.5) * self.sign).sum(dim=(1, 2, 3)) / self.n  # 0.5 for the intact texture
        return torch.stack([torch.zeros_like(s), 20 * (s - 0.25)], dim=-1)


@pytest.fixture
def texture_case(mask):
    torch.manual_seed(0)
    model = TextureModel().eval()
    x = torch.rand(1, 3, H, W)
    x = torch.where(model.sign > 0, torch.ones_like(x), x)
    x = torch.where(model.sign < 0, torch.zeros_like(x), x)
    rng = np.random.default_rng(1)
    jitter = 0.01 * rng.random((H, W))  # unique values: a strict order for quantus
    maps = {"perfect": mask + jitter, "random": rng.random((H, W)), "inverted": (~mask) + jitter}
    return model, x, maps


def test_deletion_and_insertion_rank_orderings(texture_case):
    model, x, maps = texture_case
    assert torch.softmax(model(x), -1)[0, 1] > 0.99
    dele = {k: deletion_auc(model, x, v, target=1, steps=32) for k, v in maps.items()}
    ins = {k: insertion_auc(model, x, v, target=1, steps=32) for k, v in maps.items()}
    assert dele["perfect"] < dele["random"] < dele["inverted"]
    assert ins["perfect"] > ins["random"] > ins["inverted"]
    assert dele["perfect"] < 0.25 and ins["perfect"] > 0.75  # the region is 17% of the image


def test_curve_endpoints_and_batching(texture_case):
    model, x, maps = texture_case
    black = torch.zeros_like(x)
    curve = perturbation_curve(model, x, black, maps["random"], 1, steps=8, batch_size=3)
    p = torch.softmax(model(torch.cat([x, black])), -1)[:, 1].numpy()
    assert (
        curve.shape == (9,) and curve[0] == pytest.approx(p[0], abs=1e-6) and curve[-1] == pytest.approx(p[1], abs=1e-6)
    )
    np.testing.assert_allclose(curve, perturbation_curve(model, x, black, maps["random"], 1, steps=8, batch_size=64))
    assert metrics.curve_auc(np.array([0.0, 1.0])) == 0.5 and metrics.curve_auc(np.ones(5)) == 1.0


def _quantus_curve(model, x, saliency, perturb_func=None, steps=QUANTUS_STEPS):
    pf_kwargs = {"perturb_func": perturb_func} if perturb_func else {"perturb_baseline": 0.0}
    metric = quantus.PixelFlipping(
        features_in_step=3 * H * W // steps, normalise=False, abs=False, disable_warnings=True, **pf_kwargs
    )
    a = saliency[None, None].astype(np.float32)  # (1, 1, H, W), broadcast over channels by quantus
    curves = metric(
        model=model, x_batch=x.numpy(), y_batch=np.array([1]), a_batch=a, device="cpu", softmax=True, channel_first=True
    )
    return np.asarray(curves[0])


def test_deletion_curve_matches_quantus_pixel_flipping(texture_case):
    """Same ordering, same black baseline: quantus's curve is ours without the unperturbed start point."""
    model, x, maps = texture_case
    for sal in maps.values():
        ours = perturbation_curve(model, x, torch.zeros_like(x), sal, 1, steps=QUANTUS_STEPS)
        np.testing.assert_allclose(_quantus_curve(model, x, sal), ours[1:], atol=1e-5)
        # quantus's AUC (np.trapz, dx=1, from the first step) vs ours (mean over [0, 1] from the start).
        quantus_auc = float(((ours[2:] + ours[1:-1]) / 2).sum())
        assert metrics.curve_auc(ours) == pytest.approx((quantus_auc + (ours[0] + ours[1]) / 2) / QUANTUS_STEPS)


def test_insertion_curve_matches_quantus_with_a_pasting_perturbation(texture_case):
    """quantus has no insertion metric: PixelFlipping from the blurred image, pasting original pixels."""
    model, x, maps = texture_case
    start = metrics.blurred(x)
    original = x.numpy().reshape(1, -1)

    def paste(arr, indices, **kwargs):
        out = arr.copy()
        rows = np.arange(arr.shape[0])[:, None]
        out[rows, indices] = original[rows, indices]
        return out

    for sal in maps.values():
        ours = perturbation_curve(model, start, x, sal, 1, steps=QUANTUS_STEPS)
        np.testing.assert_allclose(_quantus_curve(model, start, sal, perturb_func=paste), ours[1:], atol=1e-5)


def test_baseline_argument(texture_case):
    model, x, maps = texture_case
    with pytest.raises(ValueError):
        deletion_auc(model, x, maps["perfect"], 1, baseline="grey")
    assert insertion_auc(model, x, maps["perfect"], 1, baseline="black") > 0.5


def test_error_bars_are_the_distances_to_the_interval_ends():
    from spade_engine.metrics import error_bars

    bars = error_bars([0.5, 0.9], [0.4, 0.85], [0.7, 1.0])
    assert bars["type"] == "data" and bars["symmetric"] is False
    np.testing.assert_allclose(bars["array"], [0.2, 0.1])
    np.testing.assert_allclose(bars["arrayminus"], [0.1, 0.05])


def test_wilson_interval_matches_the_textbook_values():
    """Wilson (1927) for 6/10 at 95%: (0.3127, 0.8318); the ends stay exact at 0 and n (Newcombe 1998, table I)."""
    from spade_engine.metrics import mean_ci, wilson_interval

    np.testing.assert_allclose(wilson_interval(6, 10), (0.3127, 0.8318), atol=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert mean_ci([1, 0, 1, 1, 0, 1, 0, 1, 1, 0])[1:] == pytest.approx(wilson_interval(6, 10))
