"""DeepLift (Rescale rule) through Captum, on an attribution copy with one non-inplace module per ReLU
call site (Captum's hooks break on torchvision's reused `self.relu`). The reference is z = 0, the mean colour
of the normalised input (Captum's default baseline, as in the SPADE authors' notebook).

Captum's rules cover ReLU, ELU, LeakyReLU, Sigmoid, Tanh, Softplus, Softmax and max pooling modules; anything
else non-linear is differentiated as if linear. ReLU6 (MobileNet-V2) is rewritten in the copy as
6 - ReLU(6 - ReLU(x)), two ReLUs in sequence that the Rescale rule covers exactly; networks with other non-linearities (GELU, SiLU,
LayerNorm, attention, functional gates) are refused, and every map is checked for completeness
(summation-to-delta), see `spade_engine.saliency.support`.

Paper: Shrikumar, Greenside, Kundaje 2017, arXiv 1704.02685.
"""

from __future__ import annotations

import torch
from captum.attr import DeepLift
from torch import nn

from spade_engine.saliency._base import AttributionInput
from spade_engine.saliency._canonical import attribution_copy
from spade_engine.saliency.relu6 import ReLU6AsReLUs, replace_relu6
from spade_engine.saliency.support import check_completeness, check_untraced_activations, graph_support

_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)


def deeplift(inp: AttributionInput, target: int) -> torch.Tensor:
    """DeepLift Rescale attribution against z = 0 (the mean colour), (1, 3, H, W).

    Raises:
        UnsupportedModelError: non-linearities DeepLift's rules do not cover, or the attributions miss
            f(z) - f(0) by more than `support.DEEPLIFT_TOLERANCE` (checked on networks without max pooling).
    """
    canonical = attribution_copy(inp.net, inp.z)
    replace_relu6(canonical.module, ReLU6AsReLUs)
    graph_support("DeepLift", canonical.module, canonical.traced).require()
    if not canonical.traced:
        check_untraced_activations("DeepLift", canonical.module, inp.z)
    work = canonical.module
    baseline = torch.zeros_like(inp.z)
    attribution, delta = DeepLift(work).attribute(
        inp.z, baselines=baseline, target=target, return_convergence_delta=True
    )
    total = float(attribution.detach().sum())
    has_maxpool = any(isinstance(m, _MAX_POOLS) for m in work.modules())
    check_completeness(total, total - float(delta.detach().sum()), has_maxpool)
    return attribution
