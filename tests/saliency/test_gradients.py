"""The gradient methods differentiate the caller's own hook-free network (no attribution copy), with the same
maps as on the copy; a network carrying hooks still gets the copy, and its hooks never fire."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spade_engine.saliency import _canonical, attribute, gradients

GRADIENT_METHODS = ["Saliency", "InputXGradient", "IntegratedGradients", "GradientShap", "SmoothGrad"]


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_maps_equal_those_on_the_attribution_copy(name, tiny_resnet, image, monkeypatch):
    direct = attribute(name, tiny_resnet, image, 1)
    monkeypatch.setattr(gradients, "_model", lambda inp: _canonical.attribution_copy(inp.net, inp.z).module)
    np.testing.assert_allclose(direct, attribute(name, tiny_resnet, image, 1), rtol=1e-5, atol=1e-7)


def test_the_copy_is_skipped_only_for_a_hook_free_network(tiny_resnet, image, monkeypatch):
    copies = []
    real_copy = gradients.attribution_copy
    monkeypatch.setattr(gradients, "attribution_copy", lambda *a, **k: copies.append(1) or real_copy(*a, **k))
    attribute("Saliency", tiny_resnet, image, 1)
    assert copies == []
    fired = []
    conv = next(m for m in tiny_resnet.modules() if isinstance(m, torch.nn.Conv2d))
    handle = conv.register_forward_hook(lambda *a: fired.append(1))
    try:
        attribute("Saliency", tiny_resnet, image, 1)
    finally:
        handle.remove()
    assert copies == [1] and fired == []
