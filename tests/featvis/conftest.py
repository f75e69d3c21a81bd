"""Fixtures for tests/featvis (helpers in `featvis_fixtures.py`)."""

import pytest
from featvis_fixtures import or_model as build_or_model

from spade_engine.models import Classifier


@pytest.fixture
def tiny_model(tiny_net) -> Classifier:
    """Conv(3->8) ReLU Conv(8->8) ReLU GAP Linear(8->4), seeded; takes [0, 1] images (`tests/conftest.tiny_net`)."""
    return tiny_net


@pytest.fixture
def or_model() -> Classifier:
    return build_or_model()
