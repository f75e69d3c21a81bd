"""Guided Backpropagation and Guided GradCAM through Captum, on an attribution copy (one non-inplace ReLU
module per call site, so Captum's ReLU hooks see every call). Both guide ReLUs only: ReLU6 is rewritten in the
copy as clamp(ReLU(x), max=6) (`relu6.ClampedReLU`, exact for the guided rule); a network without ReLUs is
refused (`support.graph_support`), since the map would be the plain gradient.

Papers: Springenberg et al. 2015, arXiv 1412.6806; Selvaraju et al. 2017, arXiv 1610.02391.
"""

from __future__ import annotations

import torch
from captum.attr import GuidedBackprop, GuidedGradCam, LayerAttribution
from torch import nn

from spade_engine.saliency._base import AttributionInput
from spade_engine.saliency._canonical import CanonicalCopy, attribution_copy
from spade_engine.saliency.gradcam import layer_cam
from spade_engine.saliency.layers import explained_layer
from spade_engine.saliency.relu6 import ClampedReLU, replace_relu6
from spade_engine.saliency.support import UnsupportedModelError, check_untraced_activations, static_support


def _guided_copy(inp: AttributionInput, method: str) -> CanonicalCopy:
    static_support(method, inp.net).require()
    canonical = attribution_copy(inp.net, inp.z)
    replace_relu6(canonical.module, ClampedReLU)
    if not canonical.traced:
        check_untraced_activations(method, canonical.module, inp.z)
    if not any(isinstance(m, nn.ReLU) for m in canonical.module.modules()):
        raise UnsupportedModelError(
            f"{method} is not available for this model: it modifies ReLU gradients only, and this model has no "
            "ReLU, so the map would be the plain gradient. Use Saliency or GradCAM instead."
        )
    return canonical


def guided_backprop(inp: AttributionInput, target: int) -> torch.Tensor:
    """Gradient with negative gradients zeroed at every ReLU, (1, 3, H, W)."""
    work = _guided_copy(inp, "GuidedBackprop").module
    return GuidedBackprop(work).attribute(inp.z, target=target)


def guided_gradcam(inp: AttributionInput, target: int) -> torch.Tensor:
    """Guided Backprop times the GradCAM map of the explained layer (`inp.layer`, else the default rule),
    upsampled bilinearly, (1, 3, H, W) (Captum's GuidedGradCam, also on transformer token layers)."""
    canonical = _guided_copy(inp, "GuidedGradCam")
    layer = explained_layer(canonical, inp.layer)
    if layer.layout == "nchw":
        module = canonical.module.get_submodule(layer.name)
        return GuidedGradCam(canonical.module, module).attribute(inp.z, target=target, interpolate_mode="bilinear")
    cam = layer_cam(canonical, layer, inp.z, target)  # (1, 1, h, w)
    cam = LayerAttribution.interpolate(cam, tuple(inp.z.shape[-2:]), interpolate_mode="bilinear")
    return GuidedBackprop(canonical.module).attribute(inp.z, target=target) * cam
