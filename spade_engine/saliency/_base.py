"""The one interface every saliency method sits behind: `SaliencyMethod` and the `SaliencyResult` it yields.

A method's `fn(model, x, target)` returns a raw attribution tensor (1, C, H, W) (C = 3 for pixel attributions,
1 for GradCAM); the registry's `attribute` turns it into the per-pixel map everybody consumes:
`map[i, j] = sum_c |A[0, c, i, j]|` (float32, finite). Methods run on a private copy of the model
(`_canonical.attribution_copy`), so the caller's model, its parameters and its hooks are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

AttributionFn = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]

SEED = 0  # stochastic methods (GradientShap, SmoothGrad, LIME) draw from a fixed seed: maps are reproducible


@dataclass(frozen=True)
class SaliencyMethod:
    """A registry entry.

    Attributes:
        name: registry key, as shown in the UI.
        library: "captum", "zennit" or "spade_engine" (who implements the method).
        params: the settings used, stated for reports (n_steps, window, n_samples, ...).
        baseline: the reference input the method compares against, in words, or "none".
        fn: `fn(model, x (1,3,H,W) in [0,1], target) -> Tensor (1, C, H, W)` raw attribution.
        reduction: how `fn`'s output becomes the (H, W) map.
        reference: paper link.
    """

    name: str
    library: str
    params: dict = field(hash=False)
    baseline: str
    fn: AttributionFn = field(repr=False)
    reduction: str = "sum over channels of |attribution|"
    reference: str = ""


@dataclass(frozen=True)
class SaliencyResult:
    """One saliency map: `map` is (H, W) float32, non-negative, finite."""

    method: str
    target: int
    map: np.ndarray = field(repr=False, compare=False)
    seconds: float = 0.0


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (1, 3, H, W) -> detached (1, 3, H, W)."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    return x.detach()


def reduce_to_map(attribution: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(1, C, H, W) attribution -> (H, W) float32 map `sum_c |A_c|`, NaN/inf replaced by 0."""
    if attribution.shape[-2:] != size:
        raise ValueError(f"attribution spatial size {tuple(attribution.shape[-2:])} != input {size}")
    sal = attribution.detach().abs().sum(dim=1)[0]  # (H, W)
    return np.nan_to_num(sal.float().cpu().numpy(), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
