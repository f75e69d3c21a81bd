"""Sobol region importance: which image regions, alone and through interactions, drive a class score.

Regions (a g x g grid, SLIC superpixels or a user label map) are the random inputs; a mask value in [0, 1] per
region moves that region from a perturbed baseline (blur or mean colour) back to the image. Masks come from a
scrambled Sobol sequence; the first-order (Saltelli) and total-order (Jansen) indices are estimated from the
`A`, `B`, `A_B^(i)` design at a cost of `N * (d + 2)` forward passes.

Papers: Fel et al., "Look at the Variance! Efficient Black-box Explanations with Sobol-based Sensitivity
Analysis", NeurIPS 2021 (https://arxiv.org/abs/2111.04138); Saltelli et al. 2010 (estimators).

The estimators (`sobol_design`, `first_order`, `total_order`, `sobol_indices`) know nothing about networks, so
they are tested on analytic functions (Ishigami, additive).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import qmc
from torch import nn
from torchvision.transforms import functional as TF

from spade_engine.model_state import eval_mode

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------- estimators


def sobol_cost(n: int, d: int) -> int:
    """Number of function evaluations (forward passes) of the design: `N * (d + 2)`."""
    return int(n) * (int(d) + 2)


def sobol_design(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `A`, `B`, `A_B^(i)` matrices from one scrambled Sobol sequence of dimension `2d`.

    Args:
        n: number of base samples `N`, a power of two (balance of the Sobol sequence).
        d: number of inputs (regions).
        seed: scrambling seed.

    Returns:
        `A` (N, d), `B` (N, d) in [0, 1); `AB` (d, N, d) where `AB[i]` is `A` with column `i` taken from `B`.
    """
    if n < 2 or n & (n - 1):
        raise ValueError(f"N must be a power of two (got {n}).")
    if d < 1:
        raise ValueError("There must be at least one region.")
    sample = qmc.Sobol(d=2 * d, scramble=True, seed=seed).random_base2(int(np.log2(n)))  # (N, 2d)
    a, b = sample[:, :d], sample[:, d:]
    ab = np.repeat(a[None], d, axis=0)  # (d, N, d)
    idx = np.arange(d)
    ab[idx, :, idx] = b[:, idx].T
    return a, b, ab


def _variance(f_a: np.ndarray, f_b: np.ndarray) -> float:
    return float(np.var(np.concatenate([f_a, f_b]), ddof=1))


def _centred(f_a: np.ndarray, f_b: np.ndarray, f_ab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subtract the mean output (over A and B): same expectation, far less variance when |mean f| >> std f."""
    mu = np.concatenate([f_a, f_b]).mean()
    return f_a - mu, f_b - mu, f_ab - mu


def first_order(f_a: np.ndarray, f_b: np.ndarray, f_ab: np.ndarray) -> np.ndarray:
    """Saltelli (2010) first-order indices `S_i = mean(f(B) * (f(A_B^i) - f(A))) / V`.

    The outputs are centred first: the estimator is not shift-invariant for finite N (a class logit of 10 with a
    spread of 0.1 would otherwise swamp it with noise).

    Args:
        f_a, f_b: (N,) outputs on `A` and `B`; f_ab: (d, N) outputs on each `A_B^(i)`.

    Returns:
        (d,) first-order indices (0 where the output does not vary).
    """
    v = _variance(f_a, f_b)
    if v <= 0:
        return np.zeros(f_ab.shape[0])
    f_a, f_b, f_ab = _centred(f_a, f_b, f_ab)
    return np.mean(f_b[None] * (f_ab - f_a[None]), axis=1) / v


def total_order(f_a: np.ndarray, f_b: np.ndarray, f_ab: np.ndarray) -> np.ndarray:
    """Jansen (1999) total-order indices `ST_i = mean((f(A) - f(A_B^i))^2) / (2 V)`.

    Args:
        f_a, f_b: (N,) outputs on `A` and `B` (`f_b` enters the variance); f_ab: (d, N).

    Returns:
        (d,) total-order indices (0 where the output does not vary).
    """
    v = _variance(f_a, f_b)
    if v <= 0:
        return np.zeros(f_ab.shape[0])
    return np.mean((f_a[None] - f_ab) ** 2, axis=1) / (2 * v)


def sobol_indices(
    f: Callable[[np.ndarray], np.ndarray], n: int, d: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """First- and total-order indices of `f` with `d` inputs uniform on [0, 1].

    Args:
        f: maps an (M, d) array of inputs to (M,) outputs.
        n: base sample size `N` (power of two); `f` sees `N * (d + 2)` rows in all.
        d: number of inputs.
        seed: scrambling seed.

    Returns:
        `(S, ST)`, each (d,).
    """
    a, b, ab = sobol_design(n, d, seed)
    f_a, f_b = np.asarray(f(a), float), np.asarray(f(b), float)
    f_ab = np.asarray(f(ab.reshape(d * n, d)), float).reshape(d, n)
    return first_order(f_a, f_b, f_ab), total_order(f_a, f_b, f_ab)


# ------------------------------------------------------------------------------------------ regions


def grid_regions(height: int, width: int, grid: int) -> np.ndarray:
    """A `grid x grid` label map, (H, W) int, labels 0..grid^2-1 in row-major order."""
    rows = np.minimum(np.arange(height) * grid // height, grid - 1)
    cols = np.minimum(np.arange(width) * grid // width, grid - 1)
    return (rows[:, None] * grid + cols[None, :]).astype(np.int64)


def superpixel_regions(x: torch.Tensor, n_segments: int = 16, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels of an image (scikit-image), relabelled 0..d-1.

    Args:
        x: (3, H, W) image in [0, 1].
        n_segments: approximate number of superpixels.
        compactness: SLIC's colour/space trade-off (higher: squarer regions).

    Returns:
        (H, W) int label map.
    """
    from skimage.segmentation import slic

    img = x.detach().cpu().permute(1, 2, 0).numpy().astype(np.float64)  # (H, W, 3)
    labels = slic(img, n_segments=n_segments, compactness=compactness, start_label=0)
    return relabel(labels)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Map arbitrary region labels to consecutive integers 0..d-1 (a user-given map, say)."""
    _, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return inverse.reshape(np.shape(labels)).astype(np.int64)


def n_regions(labels: np.ndarray) -> int:
    """Number of regions `d` of a consecutive label map."""
    return int(np.max(labels)) + 1


# ---------------------------------------------------------------------------------- perturbation


def baseline_image(x: torch.Tensor, kind: str = "blur", sigma: float = 5.0) -> torch.Tensor:
    """What a region becomes when its mask is 0.

    Args:
        x: (3, H, W) image in [0, 1].
        kind: "blur" (Gaussian, `sigma` pixels) or "mean" (the image's mean colour).

    Returns:
        (3, H, W) baseline image.
    """
    if kind == "mean":
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        k = 2 * int(np.ceil(3 * sigma)) + 1
        k = min(k, 2 * (min(x.shape[-2:]) // 2) - 1)
        return TF.gaussian_blur(x[None], kernel_size=[k, k], sigma=[sigma, sigma])[0]
    raise ValueError(f"Unknown perturbation '{kind}' (use 'blur' or 'mean').")


def perturb(x: torch.Tensor, baseline: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Images with each region `i` at `baseline + m_i * (x - baseline)`.

    Args:
        x, baseline: (3, H, W); labels: (H, W) long on the same device; masks: (M, d) in [0, 1].

    Returns:
        (M, 3, H, W) perturbed images.
    """
    pixel_masks = masks[:, labels]  # (M, H, W)
    return baseline[None] + pixel_masks[:, None] * (x - baseline)[None]


# ------------------------------------------------------------------------------------------ network


@dataclass(frozen=True)
class SobolResult:
    """Sobol indices of the regions of one image for one class score."""

    first_order: np.ndarray  # (d,) S_i
    total_order: np.ndarray  # (d,) ST_i
    labels: np.ndarray  # (H, W) region label map
    target: int
    n: int
    perturbation: str
    variance: float  # Var(f) over A and B
    score: float  # class logit of the unperturbed image

    @property
    def d(self) -> int:
        return int(self.first_order.shape[0])

    @property
    def cost(self) -> int:
        return sobol_cost(self.n, self.d)

    @property
    def interaction(self) -> np.ndarray:
        """(d,) per region `ST_i - S_i`: importance through interactions with other regions."""
        return self.total_order - self.first_order

    @property
    def interaction_share(self) -> float:
        """`1 - sum_i S_i`: the share of the output variance due to interactions."""
        return float(1.0 - self.first_order.sum())

    def region_map(self, values: np.ndarray) -> np.ndarray:
        """Paint per-region values over the image: (H, W)."""
        return np.asarray(values)[self.labels]

    @property
    def first_order_map(self) -> np.ndarray:
        return self.region_map(self.first_order)

    @property
    def total_order_map(self) -> np.ndarray:
        return self.region_map(self.total_order)

    @property
    def interaction_map(self) -> np.ndarray:
        return self.region_map(self.interaction)


@torch.no_grad()
def _scores(
    model: nn.Module,
    images: Callable[[torch.Tensor], torch.Tensor],
    masks: np.ndarray,
    target: int,
    batch_size: int,
    device: torch.device,
    tick: Callable[[int], None],
) -> np.ndarray:
    out = []
    for start in range(0, len(masks), batch_size):
        chunk = torch.as_tensor(masks[start : start + batch_size], dtype=torch.float32, device=device)  # (M, d)
        out.append(model(images(chunk))[:, target].double().cpu())
        tick(len(chunk))
    return torch.cat(out).numpy()


def sobol_regions(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    labels: np.ndarray,
    n: int = 32,
    perturbation: str = "blur",
    sigma: float = 5.0,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> SobolResult:
    """Sobol first- and total-order importance of image regions for the logit of `target`.

    Args:
        model: classifier taking images in [0, 1]; not modified.
        x: (3, H, W) or (1, 3, H, W) image in [0, 1].
        target: class whose logit is explained.
        labels: (H, W) consecutive region labels (`grid_regions`, `superpixel_regions`, `relabel`).
        n: base sample size `N` (power of two); cost `N * (d + 2)` forward passes.
        perturbation: "blur" or "mean" baseline; sigma: blur width in pixels.
        batch_size: images per forward pass.
        seed: Sobol scrambling seed.
        device: where to run the model.
        progress: called as `progress(done, total)` in forward passes.

    Returns:
        A `SobolResult`.
    """
    device = torch.device(device)
    x = (x[0] if x.dim() == 4 else x).to(device)
    d = n_regions(labels)
    a, b, ab = sobol_design(n, d, seed)
    design = np.concatenate([a, b, ab.reshape(d * n, d)])  # (N (d + 2), d)
    lab = torch.as_tensor(labels, dtype=torch.long, device=device)
    base = baseline_image(x, perturbation, sigma)
    done, total = [0], len(design)

    def tick(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress(done[0], total)

    with eval_mode(model):  # every module's own mode comes back afterwards
        f = _scores(model, lambda m: perturb(x, base, lab, m), design, target, batch_size, device, tick)
        with torch.no_grad():
            score = float(model(x[None])[0, target])
    f_a, f_b, f_ab = f[:n], f[n : 2 * n], f[2 * n :].reshape(d, n)
    return SobolResult(
        first_order=first_order(f_a, f_b, f_ab),
        total_order=total_order(f_a, f_b, f_ab),
        labels=np.asarray(labels),
        target=int(target),
        n=int(n),
        perturbation=perturbation,
        variance=_variance(f_a, f_b),
        score=score,
    )
