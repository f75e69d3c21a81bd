"""Reused and on-the-fly activations (one nn.ReLU instance used several times; F.relu in forward) never give a
silently different map: a traced copy gives every call its own module; an untraceable network is explained as
the same network with separate modules, or the method is refused by name (spade_engine/saliency/support.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spade_engine.saliency import attribute
from spade_engine.saliency.support import UnsupportedModelError
from tests.conftest import frozen

SIZE = 16


class Net(nn.Module):
    """Three convs with ReLUs applied as `style` says: "separate" modules, one "reused" module, or "functional"
    F.relu in the middle. `untraceable`: a data-dependent branch that torch.fx cannot trace."""

    def __init__(self, style: str, untraceable: bool):
        super().__init__()
        self.style, self.untraceable = style, untraceable
        self.c1, self.c2, self.c3 = (nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(3))
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        if self.untraceable and bool(x.sum() > -1e9):
            x = x + 0
        x = self.r1(self.c1(x))
        x = self.c2(x)
        x = {"separate": self.r2, "reused": self.r1, "functional": F.relu}[self.style](x)
        x = (self.r1 if self.style == "reused" else self.r3)(self.c3(x))
        return self.fc(x.mean((2, 3)))


def model(style: str, untraceable: bool) -> nn.Module:
    torch.manual_seed(0)
    return frozen(Net(style, untraceable))


@pytest.fixture(scope="module")
def x():
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("method", ["GuidedBackprop", "DeepLift"])
@pytest.mark.parametrize("style", ["reused", "functional"])
def test_traced_networks_give_the_map_of_separate_modules(method, style, x):
    expected = attribute(method, model("separate", False), x, 0)
    assert np.allclose(attribute(method, model(style, False), x, 0), expected, atol=1e-6)


def test_untraceable_reused_relu_guided_backprop_is_the_same_map(x):
    expected = attribute("GuidedBackprop", model("separate", True), x, 0)
    assert np.allclose(attribute("GuidedBackprop", model("reused", True), x, 0), expected, atol=1e-6)


def test_untraceable_reused_relu_is_refused_by_deeplift_by_name(x):
    with pytest.raises(UnsupportedModelError, match="'r1' \\(3 times\\)"):
        attribute("DeepLift", model("reused", True), x, 0)


@pytest.mark.parametrize("method", ["GuidedBackprop", "GuidedGradCam", "DeepLift"])
def test_untraceable_functional_relu_is_refused(method, x):
    with pytest.raises(UnsupportedModelError, match="F.relu"):
        attribute(method, model("functional", True), x, 0)
