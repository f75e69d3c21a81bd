"""spade_engine/hooks.py: `layer_trace` names the layers the engine's trace prunes, for any model shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spade_engine.engine import SpadeEngine
from spade_engine.hooks import layer_trace
from spade_engine.models import Classifier
from tests.engine.nets import NETS, sample


class _HeadFirst(nn.Module):
    """Declares its head before its convs, applies one Linear functionally and calls another twice."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 4)
        self.shared = nn.Linear(8, 8)
        self.functional = nn.Linear(8, 8)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))

    def forward(self, x):
        h = self.body(x).mean((2, 3))  # (B, 8)
        h = torch.relu(self.shared(torch.relu(self.shared(h))))
        h = nn.functional.linear(h, self.functional.weight)  # the module's forward never runs
        return self.head(h)


def _odd_model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(_HeadFirst(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()


@pytest.mark.parametrize("make", [*NETS.values(), _odd_model], ids=[*NETS, "head_first"])
def test_layer_trace_is_the_engines(make):
    model, x = make(), sample()
    trace = SpadeEngine(model, "cpu", batch_size=8).prepare(x, n_aug=8)
    got = layer_trace(model, x[None])
    assert (got.layers, got.first_conv, got.head) == (trace.layers, trace.first_conv, trace.head)


def test_layer_trace_follows_execution_not_declaration():
    got = layer_trace(_odd_model(), sample()[None])
    assert got.layers == ("net.body.0", "net.body.2", "net.head")  # the head last although declared first
    assert got.first_conv == "net.body.0" and got.head == "net.head"
    assert got.shared == {"net.shared"} and "net.functional" not in got.layers
