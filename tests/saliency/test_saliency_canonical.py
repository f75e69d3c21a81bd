"""The private attribution copy: same function, one module per activation call, no inplace ops."""

from __future__ import annotations

import pytest
import torch
import torchvision
from captum.attr import DeepLift
from torch import nn

from spade_engine.saliency._canonical import attribution_copy
from spade_engine.saliency.layers import last_feature_module
from tests.conftest import frozen

from .conftest import randomise_batchnorm


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5).eval()
    randomise_batchnorm(net)
    return frozen(net)


def test_copy_computes_the_same_function_with_unique_noninplace_relus():
    model = _resnet18()
    x = torch.rand(2, 3, 32, 32)
    for residual_sums in (False, True):
        canonical = attribution_copy(model, x[:1], residual_sums=residual_sums)
        assert canonical.traced
        torch.testing.assert_close(canonical.module(x), model(x))
        gm = canonical.module
        relu_calls = [
            n.target
            for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.ReLU)
        ]
        assert len(relu_calls) == len(set(relu_calls)) == 1 + 2 * 8  # stem + two per BasicBlock
        assert not any(getattr(m, "inplace", False) for m in gm.modules())
    assert model.net.layer1[0].relu.inplace  # the caller's model keeps its inplace ReLUs


def test_copy_drops_the_callers_hooks():
    model = _resnet18()
    calls = []
    handle = model.net.layer1.register_forward_hook(lambda *a: calls.append(1))
    try:
        attribution_copy(model, torch.rand(1, 3, 32, 32)).module(torch.rand(1, 3, 32, 32))
        assert calls == [] and len(model.net.layer1._forward_hooks) == 1
    finally:
        handle.remove()


def test_deeplift_sums_to_the_logit_difference_on_torchvision_resnet():
    """DeepLift's summation-to-delta holds only if every ReLU call site is hooked separately.

    On the raw model Captum refuses (`self.relu` is called twice per block). The stem's overlapping max-pool
    is replaced by an identity: Captum's max-pool rule does not sum to delta for overlapping windows.
    """
    model = _resnet18()
    model.net.maxpool = nn.Identity()
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="used more than once"):
        DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=3)
    work = attribution_copy(model, x).module
    attr, delta = DeepLift(work).attribute(x, baselines=torch.zeros_like(x), target=3, return_convergence_delta=True)
    expected = model(x)[0, 3] - model(torch.zeros_like(x))[0, 3]
    torch.testing.assert_close(attr.sum(), expected, rtol=1e-3, atol=1e-4)
    assert abs(delta.item()) < 1e-3


def test_gradcam_layer_is_the_last_block_output():
    model = _resnet18()
    canonical = attribution_copy(model, torch.rand(1, 3, 64, 64))
    name = last_feature_module(canonical)
    assert isinstance(canonical.module.get_submodule(name), nn.ReLU)
    assert name.startswith("net_layer4_1_relu")  # the block's second relu call, after the residual add


class EndsInResidualAdd(nn.Module):
    """The last feature map is a functional `+` with no module after it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = h + self.conv2(h)
        return self.fc(h.mean(dim=(2, 3)))


def test_gradcam_layer_anchors_a_functional_last_feature_map():
    torch.manual_seed(0)
    model = frozen(EndsInResidualAdd())
    x = torch.rand(1, 3, 8, 8)
    canonical = attribution_copy(model, x)
    name = last_feature_module(canonical)
    assert isinstance(canonical.module.get_submodule(name), nn.Identity)
    seen = []
    handle = canonical.module.get_submodule(name).register_forward_hook(lambda m, i, o: seen.append(o))
    torch.testing.assert_close(canonical.module(x), model(x))
    handle.remove()
    h = torch.relu(model.net.conv1(model.normalize(x)))
    torch.testing.assert_close(seen[0], h + model.net.conv2(h))
