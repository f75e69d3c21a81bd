"""DeepLift (Rescale rule) through Captum, on an attribution copy with one non-inplace module per ReLU
call site (Captum's hooks break on torchvision's reused `self.relu`). The reference is z = 0, the mean colour
of the normalised input (Captum's default baseline, as in the SPADE authors' notebook).

Paper: Shrikumar, Greenside, Kundaje 2017, arXiv 1704.02685.
"""

from __future__ import annotations

import torch
from captum.attr import DeepLift

from spade_engine.saliency._base import AttributionInput
from spade_engine.saliency._canonical import attribution_copy


def deeplift(inp: AttributionInput, target: int) -> torch.Tensor:
    """DeepLift Rescale attribution against z = 0 (the mean colour)."""
    work = attribution_copy(inp.net, inp.z).module
    return DeepLift(work).attribute(inp.z, baselines=torch.zeros_like(inp.z), target=target)
