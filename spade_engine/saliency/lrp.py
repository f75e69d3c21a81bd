"""Layer-wise Relevance Propagation through zennit (Captum's LRP does not support residual blocks).

Composite `EpsilonPlusFlat`: Flat rule on the first linear layer, ZPlus on the other convolutions, Epsilon on
fully connected layers, Norm on sums and average pools, Pass on activations. Canonizers merge every
BatchNorm into the preceding conv and give residual additions their own `Sum` module:

- torchvision ResNets (BasicBlock/Bottleneck): zennit's `ResNetCanonizer`;
- torchvision VGGs: zennit's `VGGCanonizer`;
- any other net: the same two operations read off the torch.fx graph (`NamedMergeBatchNorm` over each
  conv -> BN edge, residual `+` rewritten to stack + `Sum` by `_canonical.attribution_copy`).

For a `Classifier` the relevance is propagated through `net` to the normalised input (so it is conserved:
the map sums to the explained logit for bias-free nets) and shown on the same pixel grid.

`lrp` (the registry method) refuses networks its rules do not cover (LayerNorm, attention: see
`spade_engine.saliency.support`) and checks conservation on every map; `lrp_relevance` returns the raw numbers.

Papers: Bach et al. 2015, doi:10.1371/journal.pone.0130140; Montavon et al. 2019 (LRP overview, composites);
Anders et al. 2021 (zennit), arXiv 2106.13200.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torchvision.models import VGG
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.attribution import Gradient
from zennit.canonizers import Canonizer, NamedMergeBatchNorm, SequentialMergeBatchNorm
from zennit.composites import EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from spade_engine.reparam import copy_model
from spade_engine.saliency._base import AttributionInput, attribution_input
from spade_engine.saliency._canonical import _clear_hooks, _disable_inplace, attribution_copy, logits_module
from spade_engine.saliency.support import check_conservation, graph_support, static_support

_MERGEABLE = (nn.Conv2d, nn.Linear)


def batchnorm_pairs(gm: fx.GraphModule) -> list[tuple[tuple[str], str]]:
    """`NamedMergeBatchNorm` name map: every affine BN fed only by a conv/linear whose sole user it is."""
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1):
            continue
        if isinstance(gm.get_submodule(src.target), _MERGEABLE) and gm.get_submodule(node.target).affine:
            pairs.append(((src.target,), node.target))
    return pairs


def lrp_model(net: nn.Module, z: torch.Tensor) -> tuple[nn.Module, list[Canonizer], str]:
    """A private copy of `net` and the canonizers LRP needs, plus which path was taken (for reports).

    Args:
        net: the network after normalisation.
        z: an example (normalised) input, (1, 3, H, W).
    """
    if any(isinstance(m, (BasicBlock, Bottleneck)) for m in net.modules()):
        return logits_module(_plain_copy(net), z), [ResNetCanonizer()], "zennit ResNetCanonizer"
    if isinstance(net, VGG):
        return logits_module(_plain_copy(net), z), [VGGCanonizer()], "zennit VGGCanonizer"
    canonical = attribution_copy(net, z, residual_sums=True)
    if not canonical.traced:
        return canonical.module, [SequentialMergeBatchNorm()], "SequentialMergeBatchNorm (untraced)"
    return canonical.module, [NamedMergeBatchNorm(batchnorm_pairs(canonical.module))], "fx graph canonizer"


def _plain_copy(net: nn.Module) -> nn.Module:
    clone = copy_model(net).eval()
    _clear_hooks(clone)
    _disable_inplace(clone)
    return clone


def lrp_relevance(model: nn.Module, x: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input relevance (1, 3, H, W) at the normalised input and the explained logit (0-d), unchecked.

    The output relevance is the target logit (one-hot times logit), so the input relevance sums to it up to
    the stabilisers and the biases' share. Unlike `lrp`, no support or conservation check runs: compare the
    two numbers yourself (`support.check_conservation`).
    """
    return _relevance(attribution_input(model, x), target)


def _relevance(inp: AttributionInput, target: int, checked: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    z = inp.z
    work, canonizers, _ = lrp_model(inp.net, z)
    if checked:
        graph_support("LRP", work, isinstance(work, fx.GraphModule)).require()
    with Gradient(model=work, composite=EpsilonPlusFlat(canonizers=canonizers)) as attributor:
        out, relevance = attributor(z, lambda logits: logits * _one_hot(target, logits))
    return relevance, out[0, target].detach()


def _one_hot(target: int, logits: torch.Tensor) -> torch.Tensor:
    hot = torch.zeros_like(logits)  # (1, K)
    hot[:, target] = 1.0
    return hot


def lrp(inp: AttributionInput, target: int) -> torch.Tensor:
    """LRP (EpsilonPlusFlat) relevance at the normalised input, (1, 3, H, W).

    Raises:
        UnsupportedModelError: the network has layers without a conservative rule (LayerNorm, attention...),
            or the relevance does not sum to about the explained logit (`support.check_conservation`).
    """
    static_support("LRP", inp.net).require()
    relevance, logit = _relevance(inp, target, checked=True)
    check_conservation(relevance, logit)
    return relevance
