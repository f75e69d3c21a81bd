"""EfficientNet-Lite0 split for trojan implanting: a frozen trunk (stem and blocks 0-3) shared by the original
network (the teacher) and the trojaned copy, and the tail (blocks 4-6, head, classifier) that is fine-tuned.

Works on timm's `EfficientNet` (`m.model.net` of `load_model("efficientnet_lite0")`), whose inputs are
normalised images (mean/std 0.5: `normalise`).
"""

from __future__ import annotations

import torch
from torch import nn

FROZEN_BLOCKS = 4  # blocks 0-3 (resolution 112 -> 14 px) stay as trained
MEAN, STD = 0.5, 0.5  # the card's normalisation of efficientnet_lite0


def normalise(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as the network's inputs."""
    return (images - MEAN) / STD


def trunk(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The frozen part's features of images in [0, 1]: (N, 3, 224, 224) -> (N, 80, 14, 14)."""
    x = net.bn1(net.conv_stem(normalise(images)))
    for block in net.blocks[:FROZEN_BLOCKS]:
        x = block(x)
    return x


def tail(net: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Logits from trunk features: (N, 80, 14, 14) -> (N, 1000)."""
    for block in net.blocks[FROZEN_BLOCKS:]:
        features = block(features)
    return net.forward_head(net.bn2(net.conv_head(features)))


def tail_parameters(net: nn.Module) -> dict[str, nn.Parameter]:
    """The fine-tuned parameters by state-dict name: blocks 4-6, the head conv and BatchNorm, the classifier."""
    frozen = ("conv_stem.", "bn1.", *(f"blocks.{i}." for i in range(FROZEN_BLOCKS)))
    return {k: p for k, p in net.named_parameters() if not k.startswith(frozen)}
