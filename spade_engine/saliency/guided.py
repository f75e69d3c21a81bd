"""Guided Backpropagation and Guided GradCAM through Captum, on an attribution copy (one non-inplace ReLU
module per call site, so Captum's ReLU hooks see every call).

Papers: Springenberg et al. 2015, arXiv 1412.6806; Selvaraju et al. 2017, arXiv 1610.02391.
"""

from __future__ import annotations

import torch
from captum.attr import GuidedBackprop, GuidedGradCam

from spade_engine.saliency._base import AttributionInput
from spade_engine.saliency._canonical import attribution_copy, last_feature_module


def guided_backprop(inp: AttributionInput, target: int) -> torch.Tensor:
    """Gradient with negative gradients zeroed at every ReLU."""
    work = attribution_copy(inp.net, inp.z).module
    return GuidedBackprop(work).attribute(inp.z, target=target)


def guided_gradcam(inp: AttributionInput, target: int) -> torch.Tensor:
    """Guided Backprop times the GradCAM map of the last spatial feature layer (upsampled bilinearly)."""
    canonical = attribution_copy(inp.net, inp.z)
    layer = canonical.module.get_submodule(last_feature_module(canonical))
    return GuidedGradCam(canonical.module, layer).attribute(inp.z, target=target, interpolate_mode="bilinear")
