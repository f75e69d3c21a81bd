"""Faithfulness and localisation metrics for saliency maps.

Localisation against a known ground-truth region (the trojan patch):
- `trojan_auc`: ROC AUC of per-pixel saliency against the patch mask (the SPADE paper's trojan metric,
  arXiv 2310.04519, Sec. 5);
- `pointing_game` (Zhang et al. 2016, arXiv 1608.00507) and `relevance_rank_accuracy` (Arras et al. 2022,
  arXiv 2003.07258).

Ground-truth-free faithfulness (Petsiuk et al., RISE, arXiv 1806.07421):
- `deletion_auc`: pixels are set to a baseline in decreasing saliency order; area under the class-probability
  curve (lower is better);
- `insertion_auc`: pixels of the image are pasted into a blurred copy in decreasing saliency order (higher is
  better).

How `deletion_auc` relates to `quantus.PixelFlipping` (quantus 0.6.0), checked in `tests/engine/test_metrics.py`:
both flip pixels in decreasing attribution order and read the model's output after each step, and the curves
agree step by step on the same ordering. The numbers differ because
(1) quantus's curve starts after the first step (the unperturbed image is not a point), ours starts at the
    unperturbed image;
(2) quantus integrates with `np.trapz(dx=1)` over steps (the AUC grows with the number of steps; it also calls
    `np.trapz`, removed in numpy 2.4, so `return_auc_per_sample=True` fails here), ours integrates over the
    removed fraction in [0, 1], so the AUC is a mean probability comparable across step counts and image sizes;
(3) quantus reads raw outputs unless `softmax=True`; we always use the softmax probability, as RISE does;
(4) quantus's "black" baseline is the image minimum, ours is pixel value 0;
(5) quantus ranks the (C, H, W) attribution entries (a per-pixel map broadcast over channels ties the three
    channels of a pixel) and its `features_in_step` counts entries, yet it asserts that `features_in_step`
    divides H * W, so a step covers whole pixels only when 3 * pixels-per-step divides H * W (e.g. 64 x 64
    images never qualify); we rank pixels, step over pixels, and break ties by a seeded random permutation
    rather than by sort order.
quantus has no insertion metric; `PixelFlipping` with a perturbation that pastes original pixels into the
blurred image reproduces ours (same test).

`mean_ci` reports a 95% Student-t interval (on the logit scale for scores bounded to [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from scipy.special import expit
from torch import nn
from torchvision.transforms import functional as TF

TIE_SEED = 0


def _flat(saliency: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sal = np.nan_to_num(np.asarray(saliency, dtype=np.float64)).ravel()
    gt = np.asarray(mask, dtype=bool).ravel()
    if sal.shape != gt.shape:
        raise ValueError(f"saliency {np.shape(saliency)} and mask {np.shape(mask)} differ in shape")
    if gt.all() or not gt.any():
        raise ValueError("the mask must contain both inside and outside pixels")
    return sal, gt


def trojan_auc(saliency: np.ndarray, mask: np.ndarray) -> float:
    """ROC AUC of per-pixel saliency values as a detector of the mask's pixels.

    Computed by the Mann-Whitney rank formula with average ranks for ties, so a constant map scores 0.5,
    a map larger on every mask pixel than anywhere else 1.0 and the inverse 0.0.

    Args:
        saliency: (H, W) relevance, larger = more relevant.
        mask: (H, W) bool, True on the ground-truth region (the trojan patch).
    """
    sal, gt = _flat(saliency, mask)
    ranks = stats.rankdata(sal)  # average ranks for ties, 1..N
    n_pos, n_neg = int(gt.sum()), int((~gt).sum())
    return float((ranks[gt].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pointing_game(saliency: np.ndarray, mask: np.ndarray) -> bool:
    """Hit when the map's maximum lies inside the mask.

    Coarse maps (upsampled GradCAM, LIME superpixels) peak on a plateau of tied pixels: the hit then needs
    more than half of the maximal pixels inside the mask (a unique maximum: the usual definition; a constant
    map: a miss).
    """
    sal, gt = _flat(saliency, mask)
    at_max = sal == sal.max()
    return bool((at_max & gt).sum() * 2 > at_max.sum())


def relevance_rank_accuracy(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the K = |mask| most relevant pixels that lie inside the mask.

    Pixels tied at the K-th value are counted by their expected share (random tie-breaking), so a constant
    map scores the chance level |mask| / N.
    """
    sal, gt = _flat(saliency, mask)
    k = int(gt.sum())
    threshold = np.sort(sal)[-k]
    above, tied = sal > threshold, sal == threshold
    expected_tied = (k - above.sum()) * (gt & tied).sum() / tied.sum()
    return float(((gt & above).sum() + expected_tied) / k)


def mean_ci(values: Sequence[float], level: float = 0.95, bounded: bool = False) -> tuple[float, float, float]:
    """(mean, lo, hi): confidence interval of the mean (NaNs dropped; lo = hi = mean for n < 2).

    Student-t for continuous scores; for 0/1 outcomes (pointing game, agreement) the Wilson score interval,
    which stays inside [0, 1] and does not collapse to a point at 0% or 100%.

    Args:
        values: the scores; level: the interval's coverage.
        bounded: the scores lie in [0, 1] (an AUC, a share): the t-interval is taken on the logit of the mean
            (`logit_mean_ci`), so it stays inside (0, 1) at any n (a plain t-interval of 0.979 over 3 samples
            reaches 1.021). Differences of scores are not bounded this way: leave it False for them.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size < 2:
        return mean, mean, mean
    if np.isin(v, (0.0, 1.0)).all():
        return mean, *wilson_interval(int(v.sum()), v.size, level)
    if bounded:
        return mean, *logit_mean_ci(v, level)
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half


def logit_mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(lo, hi) of the mean of scores in [0, 1], a Student-t interval on the logit scale (delta method:
    se(logit m) = se(m) / (m (1 - m))), mapped back, so both ends stay inside [0, 1] and the interval is
    asymmetric near the bounds. Equals the plain t-interval to first order when the mean is far from 0 and 1.

    Args:
        values: (n,) scores in [0, 1], n >= 2, no NaN.

    Returns:
        (lo, hi); (m, m) when the scores do not vary, (0, 0) or (1, 1) when they all sit on a bound.

    Raises:
        ValueError: a score outside [0, 1].
    """
    v = np.asarray(values, dtype=np.float64)
    if v.min() < 0.0 or v.max() > 1.0:
        raise ValueError(f"scores must lie in [0, 1] for a bounded interval; got [{v.min()}, {v.max()}]")
    m = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(v.size))
    if se == 0.0 or m in (0.0, 1.0):
        return m, m
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1)) * se / (m * (1.0 - m))  # on the logit scale
    centre = float(np.log(m / (1.0 - m)))
    return float(expit(centre - half)), float(expit(centre + half))


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) of a proportion k/n, through scipy's `binomtest(k, n).proportion_ci`;
    (0, 1) when n is 0. Used for every 0/1 outcome (pointing game, agreement, study answers)."""
    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def error_bars(mean, lo, hi) -> dict:
    """Plotly `error_y` for asymmetric intervals [lo, hi] around `mean` (array-likes on the plotted scale)."""
    mean, lo, hi = (np.asarray(a, dtype=np.float64) for a in (mean, lo, hi))
    return {"type": "data", "symmetric": False, "array": hi - mean, "arrayminus": mean - lo}


# ------------------------------------------------------------------------------------- insertion / deletion


def blurred(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Gaussian blur of (1, 3, H, W); default sigma = H / 32 px (2 px at 64 px, 7 px at 224 px)."""
    sigma = sigma if sigma is not None else max(1.0, x.shape[-1] / 32)
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    return TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def _baseline(x: torch.Tensor, baseline: str, blur_sigma: float | None) -> torch.Tensor:
    if baseline == "blur":
        return blurred(x, blur_sigma)
    if baseline == "black":
        return torch.zeros_like(x)
    raise ValueError(f"baseline must be 'blur' or 'black', got {baseline!r}")


def pixel_order(saliency: np.ndarray) -> np.ndarray:
    """Flat pixel indices by decreasing saliency; ties broken by a seeded random permutation."""
    sal = np.nan_to_num(np.asarray(saliency, dtype=np.float64)).ravel()
    tie_break = np.random.default_rng(TIE_SEED).permutation(sal.size)
    return np.lexsort((tie_break, -sal))


def perturbation_curve(
    model: nn.Module,
    start: torch.Tensor,
    end: torch.Tensor,
    saliency: np.ndarray,
    target: int,
    steps: int = 32,
    batch_size: int = 33,
) -> np.ndarray:
    """Softmax probability of `target` while pixels switch from `start` to `end` in decreasing saliency order.

    Args:
        start, end: (1, 3, H, W) images; step k shows `end` on the round(k N / steps) most salient pixels.
        saliency: (H, W).

    Returns:
        (steps + 1,) probabilities; entry 0 is `start`, the last `end`.
    """
    h, w = start.shape[-2:]
    rank = np.empty(h * w, dtype=np.int64)
    rank[pixel_order(saliency)] = np.arange(h * w)
    rank_t = torch.from_numpy(rank).to(start.device).view(1, 1, h, w)
    counts = torch.from_numpy(np.round(np.linspace(0, h * w, steps + 1)).astype(np.int64)).to(start.device)
    probs = []
    with torch.no_grad():
        for chunk in counts.split(batch_size):
            switched = rank_t < chunk.view(-1, 1, 1, 1)  # (b, 1, H, W)
            images = torch.where(switched, end, start)  # (b, 3, H, W)
            probs.append(torch.softmax(model(images), dim=-1)[:, target])
    return torch.cat(probs).float().cpu().numpy()


def curve_auc(curve: np.ndarray) -> float:
    """Trapezoidal area under a curve sampled evenly on [0, 1]."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(((curve[1:] + curve[:-1]) / 2).sum() / (curve.size - 1))


def deletion_auc(
    model: nn.Module,
    x: torch.Tensor,
    saliency: np.ndarray,
    target: int,
    steps: int = 32,
    baseline: str = "black",
    blur_sigma: float | None = None,
) -> float:
    """RISE deletion: area under p(target) as the most salient pixels are replaced by the baseline (lower = better).

    Args:
        model: images in [0, 1] -> logits.
        x: (1, 3, H, W) or (3, H, W) in [0, 1].
        saliency: (H, W).
        steps: number of deletion steps (N / steps pixels each).
        baseline: "black" (0) or "blur" (Gaussian blur of x).
    """
    x = x.unsqueeze(0) if x.dim() == 3 else x
    curve = perturbation_curve(model, x, _baseline(x, baseline, blur_sigma), saliency, target, steps)
    return curve_auc(curve)


def insertion_auc(
    model: nn.Module,
    x: torch.Tensor,
    saliency: np.ndarray,
    target: int,
    steps: int = 32,
    baseline: str = "blur",
    blur_sigma: float | None = None,
) -> float:
    """RISE insertion: area under p(target) as the most salient pixels of x are pasted into the baseline
    (higher = better). Arguments as in `deletion_auc`; the default baseline is a blurred copy of x."""
    x = x.unsqueeze(0) if x.dim() == 3 else x
    curve = perturbation_curve(model, _baseline(x, baseline, blur_sigma), x, saliency, target, steps)
    return curve_auc(curve)
