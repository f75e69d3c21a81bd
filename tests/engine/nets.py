"""Tiny seeded networks for engine tests: residual, depthwise-separable, and a Linear-head MLP-CNN."""

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from spade_engine.models import Classifier
from tests.conftest import frozen


def tiny_resnet(num_classes: int = 5, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    ds = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        BasicBlock(8, 8),
        BasicBlock(8, 16, stride=2, downsample=ds),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )
    _randomise_bn(net)
    return frozen(net)


def tiny_mobilenet(num_classes: int = 5, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)

    def dw_sep(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU6(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(),
        )

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        dw_sep(8, 16, 1),
        dw_sep(16, 24, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(24, num_classes),
    )
    _randomise_bn(net)
    return frozen(net)


def tiny_vgg(num_classes: int = 5, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 32),
        nn.ReLU(),
        nn.Linear(32, num_classes),
    )
    return frozen(net)


def _randomise_bn(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)


NETS = {"resnet": tiny_resnet, "mobilenet": tiny_mobilenet, "vgg": tiny_vgg}


def sample(seed: int = 0, size: int = 32) -> torch.Tensor:
    """A smooth random image (3, size, size) in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, size // 4, size // 4, generator=gen)
    return nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
