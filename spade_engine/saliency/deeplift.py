"""DeepLift (Rescale rule) through Captum, on an attribution copy with one non-inplace module per ReLU
call site (Captum's hooks break on torchvision's reused `self.relu`).

Paper: Shrikumar, Greenside, Kundaje 2017, arXiv 1704.02685.
"""

from __future__ import annotations

import torch
from captum.attr import DeepLift
from torch import nn

from spade_engine.saliency._canonical import attribution_copy


def deeplift(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """DeepLift Rescale attribution against a black image."""
    work = attribution_copy(model, x).module
    return DeepLift(work).attribute(x, baselines=torch.zeros_like(x), target=target)
