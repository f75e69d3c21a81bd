"""Testbed architectures: shapes, torchvision-like names, and hook/attribution friendliness."""

import pytest
import torch
from torch import nn

from spade_engine.testbed.archs import ARCHS

HEADS = {"tb_resnet": "fc", "tb_vgg": "classifier", "tb_mobilenet": "fc"}


@pytest.fixture(params=sorted(ARCHS))
def arch(request):
    return request.param


def _net(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return ARCHS[arch](10).eval()


def test_forward_shape_and_size(arch):
    net = _net(arch)
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    assert 50_000 < sum(p.numel() for p in net.parameters()) < 1_000_000
    assert ARCHS[arch](7)(torch.rand(1, 3, 64, 64)).shape == (1, 7)


def test_head_is_a_named_linear_after_global_pooling(arch):
    net = _net(arch)
    head = getattr(net, HEADS[arch])
    assert isinstance(head, nn.Linear) and head.out_features == 10
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in net.modules())


def test_every_module_runs_once_and_relus_are_not_inplace(arch):
    net = _net(arch)
    calls: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, m in net.named_modules()
        if not list(m.children())
    ]
    try:
        net(torch.rand(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    assert calls and set(calls.values()) == {1}  # no leaf module object is reused
    assert all(not m.inplace for m in net.modules() if isinstance(m, nn.ReLU))
    n_relu = sum(isinstance(m, nn.ReLU) for m in net.modules())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert n_relu >= n_bn // 2 > 0


def test_resnet_uses_torchvision_names():
    keys = set(_net("tb_resnet").state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.0.bn2.weight",
        "layer2.0.downsample.0.weight",
        "fc.weight",
        "fc.bias",
    ):
        assert key in keys, key


def test_vgg_uses_features_and_classifier():
    net = _net("tb_vgg")
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(n.startswith("features.") for n in convs)
    assert "classifier.weight" in net.state_dict()


def test_mobilenet_has_depthwise_convs():
    net = _net("tb_mobilenet")
    assert any(m.groups == m.in_channels > 1 for m in net.modules() if isinstance(m, nn.Conv2d))


def test_deeplift_runs(arch):
    from captum.attr import DeepLift

    net = _net(arch)
    x = torch.rand(1, 3, 64, 64)
    attr = DeepLift(net).attribute(x, baselines=torch.zeros_like(x), target=3)
    assert attr.shape == x.shape and torch.isfinite(attr).all() and attr.abs().sum() > 0
