"""Tiny, seeded models for the saliency tests (built here, no shipped weights needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spade_engine.models import Classifier
from tests.conftest import frozen

SIZE = 24
PATCH = (slice(2, 8), slice(14, 20))  # rows, cols of the "trojan" patch


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + identity, then the same ReLU module again (as torchvision's BasicBlock)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 4, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.block = ResidualBlock(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


class PatchNet(nn.Module):
    """Only the patch region (dilated by the first conv's receptive field) reaches the logits."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)
        gate = torch.zeros(1, 1, SIZE, SIZE)
        gate[..., PATCH[0], PATCH[1]] = 1.0
        self.register_buffer("gate", gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x)) * self.gate  # (B, 6, H, W), zero off the patch
        h = torch.relu(self.conv2(h))
        return self.fc(torch.flatten(self.pool(h), 1))


def randomise_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so BN merging is exercised."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)


@pytest.fixture(scope="session")
def tiny_resnet() -> Classifier:
    torch.manual_seed(0)
    net = TinyResNet()
    randomise_batchnorm(net)
    return frozen(net)


@pytest.fixture(scope="session")
def patch_net() -> Classifier:
    torch.manual_seed(1)
    net = PatchNet()
    with torch.no_grad():  # monotone in every pixel: removing any part of the patch lowers every logit
        for layer in (net.conv1, net.conv2, net.fc):
            layer.weight.abs_()
    return frozen(net)


@pytest.fixture(scope="session")
def image() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    coarse = torch.rand(1, 3, 6, 6, generator=g) * 0.6  # smooth background, so SLIC can follow the patch
    x = nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    x = x + 0.05 * torch.rand(1, 3, SIZE, SIZE, generator=g)
    x[..., PATCH[0], PATCH[1]] = 1.0  # a white "trojan" patch
    return x


@pytest.fixture(scope="session")
def patch_mask() -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[PATCH] = True
    return mask
