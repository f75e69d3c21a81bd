"""GradCAM through Captum's LayerGradCam on the last spatial feature layer, upsampled to the input size.

Paper: Selvaraju et al. 2017, arXiv 1610.02391.
"""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam

from spade_engine.saliency._base import AttributionInput
from spade_engine.saliency._canonical import attribution_copy, last_feature_module


def gradcam(inp: AttributionInput, target: int) -> torch.Tensor:
    """ReLU(sum_k alpha_k A_k) at the last feature layer (see `last_feature_module`), bilinear to (H, W).

    Returns:
        (1, 1, H, W), non-negative.
    """
    canonical = attribution_copy(inp.net, inp.z)
    layer = canonical.module.get_submodule(last_feature_module(canonical))
    cam = LayerGradCam(canonical.module, layer).attribute(inp.z, target=target, relu_attributions=True)  # (1, 1, h, w)
    return LayerAttribution.interpolate(cam, tuple(inp.z.shape[-2:]), interpolate_mode="bilinear")
