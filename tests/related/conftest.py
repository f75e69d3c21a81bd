"""Shared fixtures for the related-methods tests: the repo root on sys.path and tiny seeded models."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import frozen  # noqa: E402


class TinyBlock(nn.Module):
    """A residual block that calls one inplace ReLU module twice, like torchvision's BasicBlock."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        out += x
        return self.relu(out)


def tiny_classifier(num_classes: int = 4, seed: int = 0) -> nn.Module:
    """A small seeded CNN with the `Classifier` wrapper, eval mode, frozen parameters."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        TinyBlock(8),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Linear(16, num_classes),
    )
    return frozen(net)


@pytest.fixture
def tiny_model() -> nn.Module:
    return tiny_classifier()
