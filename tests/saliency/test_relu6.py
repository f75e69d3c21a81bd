"""ReLU6 under the ReLU rules (spade_engine/saliency/relu6.py): both rewrites compute ReLU6 exactly, and Guided
Backpropagation through a ReLU6 network equals the guided rule for ReLU6 written out independently here
(positive gradients pass where 0 < x < 6), not the plain gradient and not a refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spade_engine.saliency import METHODS, attribute, unsupported_methods
from spade_engine.saliency.relu6 import ClampedReLU, ReLU6AsReLUs, replace_relu6


class _GuidedReLU6(torch.autograd.Function):
    """The reference: forward ReLU6, backward relu(g) * 1[0 < x < 6] (Springenberg et al.'s rule on ReLU6)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * ((x > 0) & (x < 6))


class _RefReLU6(nn.Module):
    def forward(self, x):
        return _GuidedReLU6.apply(x)


def _relu6_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight.mul_(30)  # drive many units past 6, so the upper bound matters
    return net.eval()


@pytest.mark.parametrize("kind", [ReLU6AsReLUs, ClampedReLU])
def test_rewrites_compute_relu6_exactly(kind):
    x = torch.linspace(-10, 10, 2001)
    torch.testing.assert_close(kind()(x), nn.ReLU6()(x), rtol=0, atol=1e-6)  # 6 - (6 - x): float rounding only


def test_guided_backprop_through_relu6_is_the_guided_rule():
    net = _relu6_net()
    x = torch.rand(1, 3, 12, 12)
    hidden = net[0](x)  # the first ReLU6's input
    assert (hidden > 6).float().mean() > 0.05 and (hidden < 0).float().mean() > 0.05  # both bounds active
    reference = _relu6_net()
    replace_relu6(reference, _RefReLU6)
    z = x.clone().requires_grad_(True)
    reference(z)[0, 2].backward()
    expected = z.grad.abs().sum(1)[0].numpy()  # (H, W), the "absolute" reduction
    got = attribute("GuidedBackprop", net, x, target=2, reduction="absolute")
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected), rtol=1e-5, atol=1e-7)
    plain = attribute("Saliency", net, x, target=2, reduction="absolute")
    assert abs(got - plain).max() > 1e-4  # guided, not the plain gradient
    assert all(isinstance(m, nn.ReLU6) for m in (net[1], net[3]))  # the user's model is not rewritten


def test_efficientnet_lite_is_offered_every_relu_method():
    from spade_engine.models import load_model

    model = load_model("efficientnet_lite0").model
    refused = unsupported_methods(model, list(METHODS))
    assert not {"GuidedBackprop", "GuidedGradCam", "DeepLift", "PathwayGradient"} & set(refused), refused
