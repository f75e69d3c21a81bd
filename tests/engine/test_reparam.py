"""Reparametrised weights (`spade_engine.reparam`): SPADE prunes the weight the forward computes with, or leaves
the layer dense by name; the user's model is never changed."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spade_engine.engine import SpadeEngine
from spade_engine.models import Classifier
from spade_engine.reparam import TRANSFORMED, copy_model, fold_reparametrisations

from .nets import sample


class StandardisedConv(nn.Conv2d):
    """Weight standardisation in the forward, as timm's StdConv2d (BiT) does."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


class Net(nn.Module):
    def __init__(self, conv2: nn.Module, fc: nn.Module):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 8, 3, padding=1), conv2, fc

    def forward(self, x):
        return self.fc(F.relu(self.c2(F.relu(self.c1(x)))).mean((2, 3)))


def weight_norm_net() -> Net:
    wn = nn.utils.parametrizations.weight_norm
    return Net(wn(nn.Conv2d(8, 16, 3, padding=1)), wn(nn.Linear(16, 5)))


def legacy_weight_norm_net() -> Net:
    return Net(nn.utils.weight_norm(nn.Conv2d(8, 16, 3, padding=1)), nn.utils.weight_norm(nn.Linear(16, 5)))


def model_of(net: nn.Module) -> Classifier:
    torch.manual_seed(0)
    return Classifier(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()


@pytest.mark.parametrize("make", [weight_norm_net, legacy_weight_norm_net], ids=["parametrizations", "legacy"])
def test_weight_norm_layers_are_pruned_in_the_weight_the_forward_uses(make):
    torch.manual_seed(0)
    model = model_of(make())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_img = sample()[None]
    with torch.no_grad():
        dense_out = model(x_img)
    engine = SpadeEngine(model)
    pruned, result = engine.prune(engine.prepare(sample(), n_aug=8), 0.8)
    modules = dict(pruned.named_modules())
    x = torch.rand(2, 8, 6, 6)
    for name in ("net.c2", "net.fc"):
        assert result.layer_sparsity[name] == pytest.approx(0.8, abs=0.01)
        layer = modules[name]
        assert not nn.utils.parametrize.is_parametrized(layer) and not hasattr(layer, "weight_g")
        assert float((layer.weight == 0).float().mean()) == pytest.approx(result.layer_sparsity[name])
        if name == "net.c2":  # the forward computes with exactly this (sparse) weight
            assert torch.allclose(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1), atol=1e-6)
    # the user's model is untouched: still reparametrised, same values
    assert "parametrizations" in dict(model.net.c2.named_children()) or hasattr(model.net.c2, "weight_g")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        assert torch.equal(model(x_img), dense_out)


def test_folding_keeps_the_outputs():
    torch.manual_seed(0)
    for make in (weight_norm_net, legacy_weight_norm_net):
        net = make().eval()
        x = torch.rand(1, 3, 12, 12)
        copy = copy_model(net)
        folded = fold_reparametrisations(copy)
        assert set(folded) == {"c2", "fc"}
        with torch.no_grad():
            assert torch.allclose(copy(x), net(x), atol=1e-5)
        assert all(p.is_leaf for p in copy.parameters())


def test_a_layer_that_transforms_its_weight_is_left_dense_by_name():
    model = model_of(Net(StandardisedConv(8, 16, 3, padding=1), nn.Linear(16, 5)))
    engine = SpadeEngine(model)
    pruned, result = engine.prune(engine.prepare(sample(), n_aug=8), 0.8)
    assert "net.c2" not in result.layer_sparsity
    assert result.dense_layers["net.c2"] == TRANSFORMED
    assert torch.count_nonzero(dict(pruned.named_modules())["net.c2"].weight == 0) == 0
    assert result.layer_sparsity["net.fc"] == pytest.approx(0.8, abs=0.01)  # plain layers are still pruned


@pytest.mark.parametrize("kind", ["StdConv2d", "ScaledStdConv2d"])
def test_timm_standardised_convs_are_pruned_in_their_standardised_weight(kind):
    layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    model = model_of(Net(getattr(layers, kind)(8, 16, 3, padding=1), nn.Linear(16, 5)))
    with torch.no_grad():
        dense_out = model(sample()[None])
    engine = SpadeEngine(model)
    pruned, result = engine.prune(engine.prepare(sample(), n_aug=8), 0.8)
    layer = dict(pruned.named_modules())["net.c2"]
    assert type(layer) is nn.Conv2d and "net.c2" not in result.dense_layers
    assert float((layer.weight == 0).float().mean()) == pytest.approx(result.layer_sparsity["net.c2"], abs=1e-6)
    assert result.layer_sparsity["net.c2"] == pytest.approx(0.8, abs=0.01)
    assert type(model.net.c2).__name__ == kind  # the user's model keeps its own layer
    with torch.no_grad():
        assert torch.equal(model(sample()[None]), dense_out)
        copy = copy_model(model)
        fold_reparametrisations(copy)
        assert torch.allclose(copy(sample()[None]), dense_out, atol=1e-5)  # the fold keeps the outputs
