"""Fixtures for tests/featvis (helpers in `featvis_fixtures.py`)."""

import pytest
import torch
from featvis_fixtures import freeze
from featvis_fixtures import or_model as build_or_model
from torch import nn

from spade_engine.models import Classifier


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


@pytest.fixture
def or_model() -> Classifier:
    return build_or_model()
