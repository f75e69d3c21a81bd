"""What a network may return (models.logits_of, Classifier): tuples and named tuples (first element = logits),
TorchScript uploads (named-tuple outputs, half precision, wrong input size), and one-logit sigmoid heads shown
as two classes, through load_checkpoint, the saliency methods and the SPADE engine."""

import io
from typing import NamedTuple

import pytest
import torch
from torch import nn

from spade_engine.engine import SpadeEngine
from spade_engine.models import (
    Classifier,
    ModelLoadError,
    ModelOutputError,
    load_checkpoint,
    logits_of,
    two_class_logits,
)
from spade_engine.saliency import UnsupportedModelError, attribute

SIZE = 16


class Outputs(NamedTuple):
    logits: torch.Tensor
    aux: torch.Tensor


def small_cnn(classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes),
    )  # fmt: skip


class TwoHeads(nn.Module):
    """forward returns (logits, features), as fine-tuned re-id / VGG models do (zennit #170)."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.features, self.head = body[:-3], nn.Sequential(*body[-3:])

    def forward(self, x):
        f = self.features(x)
        return self.head(f), f


class NamedOutputs(nn.Module):
    """forward returns a named tuple, as scripted GoogLeNet / Inception-v3 do (torchvision #6121)."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x) -> Outputs:
        logits = self.body(x)
        return Outputs(logits, logits.detach() * 0)


def frozen(net: nn.Module, binary: bool = False) -> Classifier:
    model = Classifier(net, (0.5,) * 3, (0.25,) * 3, binary=binary).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(autouse=True)
def allow_torchscript(monkeypatch):
    """These tests upload TorchScript files, which a server loads only with `SPADE_ALLOW_TORCHSCRIPT=1`."""
    monkeypatch.setenv("SPADE_ALLOW_TORCHSCRIPT", "1")


def scripted_bytes(net: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net.eval()), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def body():
    torch.manual_seed(0)
    return small_cnn(5).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


def test_logits_of_takes_the_first_element_or_the_logits_entry():
    t = torch.zeros(2, 3)
    assert logits_of(t) is t and logits_of((t, 1)) is t and logits_of(Outputs(t, t)) is t
    assert logits_of({"logits": t, "hidden": 0}) is t
    for bad in ((), (None, t), {"features": t}):
        with pytest.raises(ModelOutputError, match="first element"):
            logits_of(bad)


@pytest.mark.parametrize("method", ["Saliency", "LRP", "GradCAM", "IntegratedGradients", "DeepLift", "Occlusion"])
def test_tuple_output_models_are_explained_on_their_logits(body, x, method):
    plain, tupled = frozen(body), frozen(TwoHeads(body))
    assert torch.equal(tupled(x), plain(x))
    torch.testing.assert_close(attribute(method, tupled, x, 2), attribute(method, plain, x, 2))


def test_tuple_output_models_are_pruned_by_spade(body, x):
    results = []
    for model in (frozen(body), frozen(TwoHeads(body))):
        engine = SpadeEngine(model)
        _, result = engine.prune(engine.prepare(x[0], n_aug=8), 0.5)
        results.append(result)
    assert list(results[1].layer_sparsity) == [f"net.{n}" for n in ("features.2", "head.2")]
    torch.testing.assert_close(results[1].pruned_logits, results[0].pruned_logits)


def test_scripted_named_tuple_upload_loads_and_runs(body, x):
    loaded = load_checkpoint(scripted_bytes(NamedOutputs(body)), "ignored", input_size=SIZE)
    assert loaded.info.arch == "torchscript" and len(loaded.class_names) == 5
    torch.testing.assert_close(loaded.model.net.body(loaded.model.normalize(x)), loaded.model(x))
    assert attribute("Saliency", loaded.model, x, 1).shape == (SIZE, SIZE)
    with pytest.raises(UnsupportedModelError, match="TorchScript"):  # needs hooks: refused, not a traceback
        attribute("GradCAM", loaded.model, x, 1)


def test_scripted_half_precision_upload_runs_in_float32(body, x):
    loaded = load_checkpoint(scripted_bytes(small_cnn(3).half()), "ignored", input_size=SIZE)
    assert loaded.model(x).dtype == torch.float32


def test_scripted_model_failing_on_the_input_size_gets_a_plain_message(x):
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 2))
    with pytest.raises(ModelLoadError, match="input size") as e:
        load_checkpoint(scripted_bytes(net), "ignored", input_size=SIZE * 2)
    assert "TorchScript interpreter" not in str(e.value) and "Traceback" not in str(e.value)


def test_scripted_model_returning_a_feature_map_is_refused():
    with pytest.raises(ModelOutputError, match="one score per class"):
        load_checkpoint(scripted_bytes(nn.Conv2d(3, 4, 3)), "ignored", input_size=SIZE)


# ------------------------------------------------------------------------------------- one-logit sigmoid heads


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(1)
    net = small_cnn(1)
    with torch.no_grad():
        net[-1].bias.fill_(-2.2)  # sigmoid ~0.1, as a trained detector on a normal image
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return net.eval(), buf.getvalue()


@pytest.fixture
def load_small(monkeypatch):
    """load_checkpoint for `small_cnn` weights, registered as the architecture "small_cnn" for the test."""
    import spade_engine.models as models

    original = models.build_architecture
    monkeypatch.setattr(
        models.build, "build_architecture", lambda a, k: small_cnn(k) if a == "small_cnn" else original(a, k)
    )
    return lambda data, names: load_checkpoint(data, "small_cnn", input_size=SIZE, class_names=names)


def test_one_logit_head_becomes_two_classes_with_sigmoid_probabilities(detector, load_small, x):
    net, data = detector
    loaded = load_small(data, ("normal", "defect"))
    assert loaded.class_names == ("normal", "defect") and loaded.model.binary
    z = net(loaded.model.normalize(x))  # (1, 1) the raw logit
    probs = loaded.model(x).softmax(-1)
    torch.testing.assert_close(probs[:, 1:], torch.sigmoid(z))
    torch.testing.assert_close(two_class_logits(z).diff(dim=-1), z)
    assert load_small(data, ("defect",)).class_names == ("not defect", "defect")


def test_spade_on_a_sigmoid_head_reports_real_probabilities(detector, load_small, x):
    engine = SpadeEngine(load_small(detector[1], ("normal", "defect")).model)
    _, result = engine.prune(engine.prepare(x[0], n_aug=8), 0.5)
    (cls, p), (_, q) = result.dense_top5
    assert cls == 0 and 0.5 < p < 0.99 and abs(p + q - 1) < 1e-6  # not "class 0 — 100.0%"
    assert result.dense_logits.shape == (2,)


def test_saliency_explains_either_class_of_a_sigmoid_head(detector, load_small, x):
    model = load_small(detector[1], ("normal", "defect")).model
    pos, neg = (torch.as_tensor(attribute("Saliency", model, x, c)) for c in (1, 0))
    torch.testing.assert_close(pos, neg)  # |d(z/2)| = |d(-z/2)|
    signed, against = (torch.as_tensor(attribute("IntegratedGradients", model, x, c, "signed")) for c in (1, 0))
    torch.testing.assert_close(signed, -against)
    assert attribute("LRP", model, x, 1).shape == (SIZE, SIZE)
