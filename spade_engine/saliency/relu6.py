"""ReLU6 (MobileNet-V2, EfficientNet-Lite) written with plain ReLUs, so that rules defined on ReLU cover it
exactly. Each rewrite computes min(max(x, 0), 6) (to float rounding); they differ in what a ReLU rule then sees:

- `ReLU6AsReLUs`: 6 - ReLU(6 - ReLU(x)), two ReLUs in sequence: DeepLift's Rescale multipliers compose exactly
  (the parallel form ReLU(x) - ReLU(x - 6) misses completeness in Captum by about 1%).
- `ClampedReLU`: clamp(ReLU(x), max=6), one ReLU then a clamp: Guided Backpropagation's rule at the ReLU
  (pass positive gradients where x > 0) composed with the clamp's gradient (zero where x >= 6) gives
  relu(g) * 1[0 < x < 6], the guided rule for ReLU6 itself (Springenberg et al. 2015, arXiv 1412.6806). The
  sequential form above would not: its outer ReLU sees -g and would drop every positive gradient.
"""

from __future__ import annotations

import torch
from torch import nn


class ReLU6AsReLUs(nn.Module):
    """min(max(x, 0), 6) as 6 - ReLU(6 - ReLU(x)) (for DeepLift's Rescale rule)."""

    def __init__(self):
        super().__init__()
        self.low, self.high = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 6.0 - self.high(6.0 - self.low(x))


class ClampedReLU(nn.Module):
    """min(max(x, 0), 6) as clamp(ReLU(x), max=6) (for Guided Backpropagation and ReLU-gated pathways)."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.relu(x), max=6.0)


def replace_relu6(module: nn.Module, kind: type[nn.Module]) -> int:
    """Replace every `nn.ReLU6` in `module` (an attribution copy, never the user's model) by `kind()`, in place.

    Returns:
        How many were replaced.
    """
    found = [name for name, child in module.named_modules() if isinstance(child, nn.ReLU6)]
    for name in found:
        parent, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, attr, kind())
    return len(found)
