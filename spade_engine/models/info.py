"""What the registry knows about a model (`ModelInfo`) and a loaded one (`LoadedModel`): a leaf of the models
package, imported by every loader."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from spade_engine.classifier import IMAGENET_MEAN, IMAGENET_STD, Classifier


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before loading it.

    `family`: "testbed" (ours, shipped), "packaged" (ImageNet weights from a pip package), "torchvision", "timm"
    or "checkpoint" (a user's file). `input_size` is the side of the square the model sees (px) after resizing
    the shorter side to `resize` and centre-cropping; `mean`/`std` are the per-channel normalisation inside the
    `Classifier`. `card` is the model card (shipped models only; `{}` otherwise).
    """

    name: str
    title: str
    family: str
    arch: str
    input_size: int
    resize: int
    class_names: tuple[str, ...] = ()
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    card: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class LoadedModel:
    """A ready classifier (eval mode, no gradients on its parameters) with its preprocessing and class names."""

    info: ModelInfo
    model: Classifier

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """Resize (shorter side to `info.resize`), centre-crop to `info.input_size` and convert: a (3, S, S)
        tensor in [0, 1]."""
        img = img.convert("RGB")
        img = TF.resize(img, self.info.resize, antialias=True)
        img = TF.center_crop(img, self.info.input_size)
        return TF.to_tensor(img)

    def to(self, device: str | torch.device) -> LoadedModel:
        self.model.to(device)
        return self


def wrap(net: nn.Module, info: ModelInfo, binary: bool = False) -> Classifier:
    """`net` behind `info`'s normalisation, in eval mode, with gradients off for its parameters."""
    model = Classifier(net, info.mean, info.std, binary=binary).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
