"""Pathway gradient (Khakzar et al., CVPR 2021, arXiv 2103.16886), implemented in `spade_engine.pathways`."""

from __future__ import annotations

import torch

from spade_engine.pathways import pathway_gradient as _pathway_gradient
from spade_engine.saliency._base import AttributionInput
from spade_engine.saliency._canonical import attribution_copy
from spade_engine.saliency.support import static_support

PATHWAY_KEEP = 0.15  # global top fraction of |a * dy/da| kept (the authors' default)


def pathway_gradient(inp: AttributionInput, target: int) -> torch.Tensor:
    """Gradient w.r.t. the normalised input back-propagated only through the critical pathway, (1, 3, H, W)."""
    static_support("PathwayGradient", inp.net).require()
    return _pathway_gradient(attribution_copy(inp.net, inp.z).module, inp.z, target, keep=PATHWAY_KEEP)
