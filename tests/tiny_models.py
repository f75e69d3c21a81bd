"""A tiny seeded CNN that pages under test load as a shipped testbed model (32 px, prunable, fast)."""

import torch
from torch import nn


def seeded_tiny_net(num_classes: int) -> nn.Module:
    """Two 3x3 convs (the second strided) and a linear head, with weights from seed 0 (random, reproducible)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )  # fmt: skip
