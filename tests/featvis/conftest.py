"""Tiny seeded models for the feature-visualisation and neuron tests."""

import pytest
import torch
from torch import nn

from spade_engine.models import Classifier


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture
def tiny_model() -> Classifier:
    """Conv(3->8) ReLU Conv(8->8) ReLU GAP Linear(8->4), seeded; takes [0, 1] images."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    return freeze(Classifier(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
