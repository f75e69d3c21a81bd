"""Layers whose neurons are not on dim 1 (a Linear on channels-last maps as in ConvNeXt, a Linear on tokens as in
a ViT's MLP) and TorchScript models, in the neuron tools and feature visualisation."""

import numpy as np
import pytest
import torch
from featvis_fixtures import freeze
from torch import nn

from spade_engine import featvis, neurons
from spade_engine.models import Classifier

SIZE = 16


class ChannelsLastNet(nn.Module):
    """Conv stem (3->4, stride 4: a 4x4 grid), then a pointwise Linear 4->12 on (B, H, W, C) as ConvNeXt does."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 4, stride=4)
        self.pw = nn.Linear(4, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        y = self.pw(self.stem(x).permute(0, 2, 3, 1)).relu()  # (B, 4, 4, 12)
        return self.head(y.mean((1, 2)))


class TokenNet(nn.Module):
    """Patch embedding into 16 tokens of width 4 plus a class token, then a token MLP 4->10 on (B, T, C)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 4))
        self.fc1 = nn.Linear(4, 10)
        self.head = nn.Linear(10, 3)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # (B, 16, 4)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1)  # (B, 17, 4)
        return self.head(self.fc1(t).relu()[:, 0])


def model_of(net: nn.Module) -> Classifier:
    torch.manual_seed(0)
    return freeze(Classifier(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))


@pytest.fixture(params=["channels_last", "tokens"])
def layout(request):
    torch.manual_seed(0)
    if request.param == "channels_last":
        return model_of(ChannelsLastNet()), "net.pw", 12, "conv", (4, 4)
    return model_of(TokenNet()), "net.fc1", 10, "tokens", None


def test_the_picker_offers_the_output_features_as_neurons(layout):
    model, layer, features, kind, spatial = layout
    info = {i.name: i for i in neurons.list_layers(model, SIZE)}[layer]
    assert (info.channels, info.kind, info.spatial) == (features, kind, spatial)


def test_ranking_covers_every_feature_and_matches_the_activations(layout):
    model, layer, features, _, _ = layout
    x = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    ranking = neurons.rank_neurons(model, x, layer)
    assert len(ranking.activation) == features
    with torch.no_grad():
        raw = {}
        handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: raw.setdefault("o", o))
        model(x[None])
        handle.remove()
    per_feature = raw["o"][0].flatten(0, -2).mean(0).numpy()  # features are the last dim of the raw output
    assert np.allclose(ranking.activation, per_feature, atol=1e-6)
    assert np.isfinite(ranking.attribution).all()


def test_dataset_activations_and_patches_use_features(layout):
    model, layer, features, _, spatial = layout
    images = torch.rand(6, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    acts = neurons.dataset_activations(model, images, layer)
    assert acts.value.shape == (6, features) and acts.spatial == spatial
    rf = neurons.receptive_field(model, layer, SIZE)
    patches = neurons.top_patches(images, acts, features - 1, k=2, rf=rf)
    assert patches.images.shape[0] == 2
    scores = neurons.find_multifaceted(model, images, layer, channels=[0, features - 1], top_k=4, acts=acts)
    assert {s.channel for s in scores} == {0, features - 1}


def test_channel_visualisation_of_the_last_feature_raises_it(layout):
    model, layer, features, _, _ = layout
    target = featvis.channel_target(layer, features - 1)
    featvis.check_target(model, target, SIZE)
    with pytest.raises(ValueError, match="out of range"):
        featvis.check_target(model, featvis.channel_target(layer, features), SIZE)
    vis = featvis.render(model, target, featvis.FeatVisConfig(image_size=SIZE, steps=24, lr=0.1))
    assert vis.trace[-1] < vis.trace[0]  # the loss is minus the feature's mean activation


def test_capture_leaves_the_forward_unchanged(layout):
    model, layer, *_ = layout
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        plain = model(x)
        with featvis.capture(model, [layer]):
            hooked = model(x)
    assert torch.equal(plain, hooked)


def test_torchscript_models_have_no_layers_and_refuse_layer_targets(tiny_model):
    scripted = Classifier(torch.jit.script(tiny_model.net), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    assert featvis.is_scripted(scripted)
    assert neurons.list_layers(scripted, SIZE) == []
    with pytest.raises(ValueError, match="TorchScript"):
        featvis.render(scripted, featvis.channel_target("net.0", 0), featvis.FeatVisConfig(image_size=SIZE, steps=2))
    vis = featvis.render(scripted, featvis.class_target(1), featvis.FeatVisConfig(image_size=SIZE, steps=8))
    assert vis.trace[-1] < vis.trace[0]  # the class logit needs no hooks
