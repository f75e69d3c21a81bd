"""GradCAM at small inputs (spade_engine/saliency/layers.py): a layer whose map is 1×1 is never the default (its
map would be one flat value); a model whose every conv map is 1×1 is refused in words."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spade_engine.models import Classifier
from spade_engine.saliency import attribute, gradcam_layers
from tests.conftest import frozen

SIZE = 16


class Collapsing(nn.Module):
    """8×8 maps, then a conv whose kernel covers the whole map (1×1 output), as a deep CNN at a small input.
    With `unrolled`, the forward has data-dependent control flow (no fx trace: the untraced path)."""

    def __init__(self, unrolled: bool = False):
        super().__init__()
        self.unrolled = unrolled
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.c3, self.fc = nn.Conv2d(8, 8, 8), nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))  # (B, 8, 8, 8)
        if self.unrolled and bool(x.sum() > -1e9):  # untraceable branch
            x = x + 0
        return self.fc(torch.relu(self.c3(x)).flatten(1))  # c3: (B, 8, 1, 1)


def model(net: nn.Module) -> Classifier:
    return frozen(net)


@pytest.mark.parametrize("unrolled", [False, True], ids=["traced", "untraced"])
def test_the_default_layer_has_a_map_larger_than_1x1(unrolled):
    torch.manual_seed(0)
    m = model(Collapsing(unrolled))
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    default, _ = gradcam_layers(m, x)
    assert "c3" not in default and ("c2" in default or "relu" in default or "anchor" in default)
    saliency = attribute("GradCAM", m, x, 0)
    assert saliency.shape == (SIZE, SIZE) and np.ptp(saliency) > 0  # a map, not one flat value


def test_a_model_with_only_1x1_maps_is_refused_in_words():
    net = nn.Sequential(nn.Conv2d(3, 8, SIZE), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="1×1"):
        attribute("GradCAM", model(net), torch.rand(1, 3, SIZE, SIZE), 0)
