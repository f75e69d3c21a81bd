"""GradCAM's layer (spade_engine/saliency/layers.py): the token grid of a ViT instead of its patch-embedding conv,
today's rule for CNNs (ConvNeXt included), and a user-chosen layer by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

from spade_engine.saliency import attribute, gradcam_layers, with_layer
from spade_engine.saliency._base import attribution_input
from spade_engine.saliency._canonical import attribution_copy
from spade_engine.saliency.layers import FeatureLayer, classify, cnn_feature_module, last_feature_module
from tests.conftest import frozen

from .test_support import SIZE, tiny_convnext, tiny_vit


@pytest.fixture(scope="module")
def x():
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def vit():
    return frozen(tiny_vit())


def test_vit_gradcam_explains_the_last_blocks_tokens_not_the_patch_embedding(vit, x):
    inp = attribution_input(vit, x)
    layer = last_feature_module(attribution_copy(inp.net, inp.z))
    assert layer == "encoder.layers.encoder_layer_1.ln_1"  # the last block's output reaches the head via CLS only
    sal = attribute("GradCAM", vit, x, 1)
    assert sal.shape == (SIZE, SIZE) and np.isfinite(sal).all() and sal.std() > 0


def test_the_user_can_choose_the_gradcam_layer(vit, x):
    default, layers = gradcam_layers(vit, x)
    assert default == "encoder.layers.encoder_layer_1.ln_1" and {default, "conv_proj"} <= set(layers)
    chosen = attribute(with_layer("GradCAM", "conv_proj"), vit, x, 1)
    assert not np.allclose(chosen, attribute("GradCAM", vit, x, 1))
    assert attribute(with_layer("GradCAM", default), vit, x, 1) == pytest.approx(attribute("GradCAM", vit, x, 1))
    with pytest.raises(ValueError, match="not a spatial feature layer"):
        attribute(with_layer("GradCAM", "heads.head"), vit, x, 1)
    with pytest.raises(ValueError, match="only GradCAM"):
        attribute("Saliency[conv_proj]", vit, x, 1)


def test_cnn_default_is_todays_rule_and_map(tiny_resnet, image):
    inp = attribution_input(tiny_resnet, image)
    canonical = attribution_copy(inp.net, inp.z)
    name = cnn_feature_module(canonical)
    assert gradcam_layers(tiny_resnet, image)[0] == name
    cam = LayerGradCam(canonical.module, canonical.module.get_submodule(name)).attribute(
        inp.z, target=2, relu_attributions=True
    )
    expected = LayerAttribution.interpolate(cam, image.shape[-2:], interpolate_mode="bilinear")[0, 0]
    actual = attribute("GradCAM", tiny_resnet, image, 2)
    np.testing.assert_allclose(actual, expected.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_convnext_keeps_the_cnn_rule_despite_channels_last_blocks(x):
    model = frozen(tiny_convnext())
    default, layers = gradcam_layers(model, x)
    assert "block" not in default  # the residual sum after the block, not the channels-last Linear inside it
    assert any(".block." in name for name in layers)  # those stay choosable


def test_token_and_channels_last_layouts_reshape_to_the_grid():
    assert classify(torch.Size([1, 1 + 16, 32]), (32, 32)) == ("tokens", (4, 4), 1)
    assert classify(torch.Size([1, 4, 4, 96]), (32, 32)) == ("nhwc", (4, 4), 0)
    assert classify(torch.Size([1, 96, 4, 4]), (32, 32)) == ("nchw", (4, 4), 0)
    assert classify(torch.Size([1, 96]), (32, 32)) is None
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)  # (B, 1 + h*w, D)
    grid = FeatureLayer("t", "tokens", (4, 4), prefix=1).to_nchw(tokens)
    assert grid.shape == (2, 3, 4, 4) and torch.equal(grid[1, :, 0, 1], tokens[1, 2])  # row-major patches
