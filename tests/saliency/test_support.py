"""Methods that cannot handle a model say so (spade_engine/saliency/support.py), never a silently wrong map:
LRP and DeepLift on LayerNorm / GELU / attention nets, LRP conservation and DeepLift completeness checks,
GuidedBackprop without ReLUs; ReLU6 rewritten so DeepLift stays exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.convnext import CNBlock, LayerNorm2d
from torchvision.models.vision_transformer import VisionTransformer

from spade_engine.saliency import UnsupportedModelError, attribute, static_support, unsupported_methods
from spade_engine.saliency._base import attribution_input
from spade_engine.saliency.deeplift import deeplift
from spade_engine.saliency.lrp import lrp_relevance
from tests.conftest import frozen

SIZE = 32


def tiny_convnext() -> nn.Module:
    """ConvNeXt's kind: patchify conv, LayerNorm2d, a CNBlock (depthwise 7x7, channels-last LayerNorm, GELU,
    layer scale), LayerNorm2d head (pytorch-grad-cam #240)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 4, stride=4), LayerNorm2d(16), CNBlock(16, 0.5, 0.0), nn.AdaptiveAvgPool2d(1),
        LayerNorm2d(16), nn.Flatten(1), nn.Linear(16, 4),
    )  # fmt: skip


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=SIZE, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=4)  # fmt: skip
    with torch.no_grad():  # torchvision zero-initialises the head: every gradient would be 0
        vit.heads.head.weight.normal_(0, 0.5)
    return vit


class Gated(nn.Module):
    """A functional sigmoid gate (squeeze-excitation style): no module for DeepLift's rules to hook."""

    def __init__(self):
        super().__init__()
        self.conv, self.gate, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 1), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x)) * torch.sigmoid(self.gate(x))
        return self.fc(h.mean((2, 3)))


class Centred(nn.Module):
    """Channel centring before the head, a LayerNorm's first half written functionally: relevance that flows
    back through it sums to zero, so LRP cannot conserve the logit."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean((2, 3))
        return self.fc(h - h.mean(dim=1, keepdim=True))


class ReLU6Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.body(x * 4).mean((2, 3)))  # x 4: activations beyond 6, where ReLU6 saturates


@pytest.fixture(scope="module")
def x():
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("build", [tiny_convnext, tiny_vit])
@pytest.mark.parametrize("method", ["LRP", "DeepLift"])
def test_layernorm_gelu_and_attention_models_refuse_lrp_and_deeplift(build, method, x):
    model = frozen(build())
    support = static_support(method, model)
    assert not support.supported and "LayerNorm" in support.reason
    with pytest.raises(UnsupportedModelError, match=f"{method} is not available for this model"):
        attribute(method, model, x, 1)
    assert method in unsupported_methods(model, ["Saliency", method])


def test_the_refused_maps_would_have_been_wrong(x):
    """What the refusal prevents: on LayerNorm nets LRP's relevance vanishes and DeepLift is InputXGradient."""
    model = frozen(tiny_convnext())
    relevance, logit = lrp_relevance(model, x, 1)
    assert abs(float(relevance.sum())) < 1e-3 * abs(float(logit))


@pytest.mark.parametrize("method", ["GuidedBackprop", "GuidedGradCam"])
def test_guided_methods_refuse_nets_without_relu(method, x):
    with pytest.raises(UnsupportedModelError, match="no ReLU"):
        attribute(method, frozen(tiny_vit()), x, 1)


@pytest.mark.parametrize("method", ["Saliency", "IntegratedGradients", "Occlusion", "GradCAM"])
def test_model_agnostic_methods_still_explain_transformers(method, x):
    sal = attribute(method, frozen(tiny_vit()), x, 1)
    assert sal.shape == (SIZE, SIZE) and np.isfinite(sal).all() and sal.max() > 0


def test_deeplift_refuses_a_functional_gate(x):
    with pytest.raises(UnsupportedModelError, match="sigmoid"):
        attribute("DeepLift", frozen(Gated().eval()), x, 0)


def test_lrp_conservation_check_refuses_vanishing_relevance(x):
    torch.manual_seed(0)
    model = frozen(Centred().eval())
    with pytest.raises(UnsupportedModelError, match="not conservative"):
        attribute("LRP", model, x, 0)


def test_lrp_conservation_check_passes_relu_resnets_for_every_class(tiny_resnet, image):
    for target in range(4):  # biases absorb part of the relevance, never all of it
        assert np.isfinite(attribute("LRP", tiny_resnet, image, target)).all()


def test_deeplift_rewrites_relu6_and_keeps_completeness(x):
    torch.manual_seed(0)
    model = frozen(ReLU6Net().eval())
    inp = attribution_input(model, x)
    total = float(deeplift(inp, 2).detach().sum())
    with torch.no_grad():
        expected = float((inp.net(inp.z) - inp.net(torch.zeros_like(inp.z)))[0, 2])
    assert total == pytest.approx(expected, rel=1e-4, abs=1e-6)
