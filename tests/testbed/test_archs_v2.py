"""Testbed v2 architecture: ResNet-18 depth at 128 px, torchvision-like names, hook and attribution friendly."""

import torch
from torch import nn

from spade_engine.models import Classifier, architectures
from spade_engine.testbed.archs import ARCHS, ARCHS_V2, TinyResNet, resnet18_narrow


def _net() -> nn.Module:
    torch.manual_seed(0)
    return ARCHS_V2["tb_resnet18"](10).eval()


def test_registered_apart_from_v1_and_loadable_by_the_registry():
    assert set(ARCHS_V2).isdisjoint(ARCHS) and set(ARCHS_V2) <= set(architectures())
    v1 = TinyResNet(10)  # v1's layout and names are unchanged by the `blocks` argument
    assert "layer1.0.conv1.weight" in v1.state_dict() and not any(k.startswith("layer1.1") for k in v1.state_dict())


def test_resnet18_depth_shape_and_size():
    net = _net()
    assert net(torch.rand(2, 3, 128, 128)).shape == (2, 10)
    assert resnet18_narrow(7)(torch.rand(1, 3, 64, 64)).shape == (1, 7)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 16 + 3  # stem, 8 BasicBlocks x 2, 3 projection shortcuts
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == len(convs)
    n_params = sum(p.numel() for p in net.parameters())
    assert 500_000 < n_params < 1_000_000 and 4 * n_params < 50 * 2**20  # float32 weights far under 50 MB
    assert isinstance(net.fc, nn.Linear) and isinstance(net.avgpool, nn.AdaptiveAvgPool2d)


def test_torchvision_names():
    keys = set(_net().state_dict())
    for stage in range(1, 5):
        for block in (0, 1):
            assert f"layer{stage}.{block}.conv2.weight" in keys and f"layer{stage}.{block}.bn1.running_var" in keys
    assert {"conv1.weight", "bn1.weight", "layer2.0.downsample.0.weight", "fc.weight", "fc.bias"} <= keys
    assert "layer1.0.downsample.0.weight" not in keys and "layer2.1.downsample.0.weight" not in keys


def test_every_module_runs_once_and_relus_are_not_inplace():
    net = _net()
    calls: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, m in net.named_modules()
        if not list(m.children())
    ]
    try:
        net(torch.rand(1, 3, 128, 128))
    finally:
        for h in hooks:
            h.remove()
    assert calls and set(calls.values()) == {1}
    assert all(not m.inplace for m in net.modules() if isinstance(m, nn.ReLU))


def test_lrp_canonizes_and_deeplift_runs():
    from captum.attr import DeepLift

    from spade_engine.saliency.lrp import lrp_model, lrp_relevance

    net = _net()
    x = torch.rand(1, 3, 128, 128)
    attr = DeepLift(net).attribute(x, baselines=torch.zeros_like(x), target=3)
    assert attr.shape == x.shape and torch.isfinite(attr).all() and attr.abs().sum() > 0
    _, canonizers, path = lrp_model(net, x)
    assert path == "fx graph canonizer" and canonizers
    relevance, logit = lrp_relevance(Classifier(net, (0.5,) * 3, (0.25,) * 3).eval(), x, 3)
    assert relevance.shape == x.shape and torch.isfinite(relevance).all() and torch.isfinite(logit)
