"""LRP through zennit: relevance conservation, and the generic fx canonizer against zennit's ResNetCanonizer."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import NamedMergeBatchNorm
from zennit.composites import EpsilonPlusFlat

from spade_engine.saliency._canonical import attribution_copy
from spade_engine.saliency.lrp import batchnorm_pairs, lrp_model, lrp_relevance
from tests.conftest import frozen

from .conftest import randomise_batchnorm

CONSERVATION_RTOL = 1e-3  # the only leak is the 1e-6 stabilisers


class BiasFreeResNet(nn.Module):
    """conv-ReLU-conv-ReLU + identity, avg pool, linear; no biases, so LRP must conserve relevance."""

    def __init__(self, width: int = 6, classes: int = 3):
        super().__init__()
        self.conv0 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv0(x))
        out = torch.relu(self.conv2(torch.relu(self.conv1(h))))
        return self.fc(torch.flatten(self.pool(out + h), 1))


def _reference_relevance(net: nn.Module, z: torch.Tensor, target: int, canonizers) -> torch.Tensor:
    with Gradient(model=net, composite=EpsilonPlusFlat(canonizers=canonizers)) as attributor:
        _, rel = attributor(z, lambda y: y * nn.functional.one_hot(torch.tensor([target]), y.shape[-1]))
    return rel


def test_relevance_is_conserved_on_a_bias_free_residual_net():
    torch.manual_seed(0)
    model = frozen(BiasFreeResNet())
    x = torch.rand(1, 3, 16, 16)
    for target in range(3):
        relevance, logit = lrp_relevance(model, x, target)
        assert relevance.shape == (1, 3, 16, 16)
        assert abs(relevance.sum().item()) > 0
        torch.testing.assert_close(relevance.sum(), logit, rtol=CONSERVATION_RTOL, atol=1e-6)


def test_generic_path_rewrites_the_residual_add():
    torch.manual_seed(0)
    net = BiasFreeResNet().eval()
    work, _, path = lrp_model(net, torch.rand(1, 3, 16, 16))
    assert path == "fx graph canonizer"
    assert any(type(m).__name__ == "Sum" for m in work.modules())


def test_fx_canonizer_matches_zennit_resnet_canonizer_on_torchvision_resnet():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5).eval()
    randomise_batchnorm(net)
    z = torch.randn(1, 3, 32, 32)
    work, canonizers, path = lrp_model(net, z)
    assert path == "zennit ResNetCanonizer"
    reference = _reference_relevance(work, z, 2, canonizers)
    graph = attribution_copy(net, z, residual_sums=True).module
    pairs = batchnorm_pairs(graph)
    assert len(pairs) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    ours = _reference_relevance(graph, z, 2, [NamedMergeBatchNorm(pairs)])
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-6)


def test_lrp_leaves_batchnorm_of_the_caller_alone():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5).eval()
    randomise_batchnorm(net)
    model = frozen(net)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lrp_relevance(model, torch.rand(1, 3, 32, 32), 1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("builder", [torchvision.models.resnet18, torchvision.models.vgg11_bn])
def test_lrp_runs_on_torchvision_architectures(builder):
    torch.manual_seed(0)
    model = frozen(builder(num_classes=4))
    relevance, _ = lrp_relevance(model, torch.rand(1, 3, 32, 32), 0)
    assert torch.isfinite(relevance).all() and relevance.abs().sum() > 0
