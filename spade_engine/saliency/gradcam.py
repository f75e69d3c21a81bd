"""GradCAM at the last spatial feature layer (or the user's), upsampled to the input size.

CNN layers, (B, C, h, w), go through Captum's LayerGradCam as before. Transformer layers (tokens (B, N, D) or
channels-last (B, h, w, C); see `spade_engine.saliency.layers`) are reshaped to (B, C, h, w), activations and
gradients alike, and combined by the same formula, so a ViT is explained on its patch grid instead of at the
patch-embedding conv.

Paper: Selvaraju et al. 2017, arXiv 1610.02391; token reshape: pytorch-grad-cam's `reshape_transform`.
"""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam

from spade_engine.hooks import capture
from spade_engine.models import logits_of
from spade_engine.saliency._base import AttributionInput
from spade_engine.saliency._canonical import CanonicalCopy, attribution_copy
from spade_engine.saliency.layers import FeatureLayer, _first_tensor, explained_layer
from spade_engine.saliency.support import static_support


def gradcam(inp: AttributionInput, target: int) -> torch.Tensor:
    """ReLU(sum_k alpha_k A_k) at the explained layer (`inp.layer`, else `layers.default_layer`), bilinear to
    (H, W).

    Returns:
        (1, 1, H, W), non-negative.

    Raises:
        ValueError: `inp.layer` is not a spatial feature layer of the model, or the model has none.
        UnsupportedModelError: a TorchScript model (no hooks).
    """
    static_support("GradCAM", inp.net).require()
    canonical = attribution_copy(inp.net, inp.z)
    cam = layer_cam(canonical, explained_layer(canonical, inp.layer), inp.z, target)  # (1, 1, h, w)
    return LayerAttribution.interpolate(cam, tuple(inp.z.shape[-2:]), interpolate_mode="bilinear")


def layer_cam(canonical: CanonicalCopy, layer: FeatureLayer, z: torch.Tensor, target: int) -> torch.Tensor:
    """The ReLU'd class activation map of `layer` on its own grid, (1, 1, h, w)."""
    if layer.layout == "nchw":
        module = canonical.module.get_submodule(layer.name)
        return LayerGradCam(canonical.module, module).attribute(z, target=target, relu_attributions=True)
    activations = _activation_and_gradient(canonical, layer, z, target)
    a, g = (layer.to_nchw(t) for t in activations)  # (1, C, h, w) each
    weights = g.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1): alpha_k, the pooled gradients
    return torch.relu((weights * a).sum(dim=1, keepdim=True)).detach()  # (1, 1, h, w)


def _activation_and_gradient(
    canonical: CanonicalCopy, layer: FeatureLayer, z: torch.Tensor, target: int
) -> tuple[torch.Tensor, torch.Tensor]:
    watched = {layer.name: canonical.module.get_submodule(layer.name)}
    with capture(watched, "output", keep=_first_tensor) as store, torch.enable_grad():
        logits = logits_of(canonical.module(z.detach().clone().requires_grad_(True)))
        activation = store[layer.name][0]  # the layer's first call
        (grad,) = torch.autograd.grad(logits[0, target], activation)
    return activation.detach(), grad
