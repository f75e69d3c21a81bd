"""Nothing the app does to a user's model changes it: weights, BatchNorm running statistics, each module's
train/eval flag, requires_grad, .grad and hooks are the same before and after every engine entry point."""

import pytest
import torch
from torch import nn

from spade_engine import featvis, neurons
from spade_engine.engine import SpadeEngine
from spade_engine.models import Classifier
from spade_engine.saliency import attribute

SIZE = 16


def user_model() -> Classifier:
    """A model as a user holds it mid-training: train mode, trainable weights, but a frozen (eval) BatchNorm."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, 4),
    )  # fmt: skip
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    model = Classifier(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).train()
    net[1].eval()  # mixed modes, as with a frozen BatchNorm
    net[0].weight.requires_grad_(False)  # and a frozen first layer
    return model


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
        ),
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(g is None for g in after["grads"])
    assert before["hooks"] == after["hooks"]
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k


def x() -> torch.Tensor:
    return torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


ENTRY_POINTS = {
    "featvis channel": lambda m: featvis.render(m, featvis.channel_target("net.3", 1), featvis.FeatVisConfig(SIZE, 4)),
    "featvis class": lambda m: featvis.render(m, featvis.class_target(2), featvis.FeatVisConfig(SIZE, 4)),
    "list_layers": lambda m: neurons.list_layers(m, SIZE),
    "rank_neurons": lambda m: neurons.rank_neurons(m, x(), "net.3"),
    "multifaceted": lambda m: neurons.find_multifaceted(m, torch.rand(6, 3, SIZE, SIZE), "net.3", top_k=3),
    "receptive_field": lambda m: neurons.receptive_field(m, "net.3", SIZE),
    "spade": lambda m: SpadeEngine(m).prune(SpadeEngine(m).prepare(x(), n_aug=4), 0.5),
    **{f"saliency {name}": (lambda m, name=name: attribute(name, m, x()[None], 1))
       for name in ("Saliency", "IntegratedGradients", "GradCAM", "GuidedBackprop", "DeepLift", "LRP", "SmoothGrad")},
}  # fmt: skip


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_entry_point_leaves_the_model_as_it_was(entry):
    model = user_model()
    before = snapshot(model)
    ENTRY_POINTS[entry](model)
    assert_same(before, snapshot(model))
