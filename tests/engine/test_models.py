"""Model registry, checkpoints and torchvision weights: clear, typed errors for every bad input."""

import io
import os

import pytest
import torch
from torchvision.models import get_model_weights, resnet18

from spade_engine import models
from spade_engine.models import CheckpointMismatchError, ModelLoadError, WeightsUnavailableError, load_checkpoint

from .nets import tiny_vgg


def to_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_registry_lists_required_torchvision_models_with_preprocessing():
    names = {m.name: m for m in models.list_models()}
    for required in (
        "resnet18",
        "resnet50",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "vgg16",
        "densenet121",
        "convnext_tiny",
    ):
        info = names[required]
        assert info.family == "torchvision" and len(info.class_names) == 1000
        assert info.input_size == 224 and info.resize >= 224
    listed = models.list_models()
    assert listed[0].name == models.DEFAULT_MODEL == "efficientnet_lite0", "the app opens on the real network"
    order = {"packaged": 0, "testbed": 1, "torchvision": 2, "timm": 3}
    families = [order[m.family] for m in listed]
    assert families == sorted(families), "shipped models (packaged, then testbed) come before downloaded ones"


def test_offline_without_cache_gives_typed_error(empty_torch_home):
    with pytest.raises(WeightsUnavailableError) as e:
        models.load_model("resnet18", allow_download=False)
    msg = str(e.value)
    assert "resnet18" in msg and str(empty_torch_home) in msg and "get_model" in msg


def test_weights_found_in_torch_cache(empty_torch_home):
    weights = get_model_weights("resnet18").DEFAULT
    cache = models.weights_cache_dir()
    cache.mkdir(parents=True)
    torch.save(resnet18().state_dict(), cache / os.path.basename(weights.url))
    loaded = models.load_model("resnet18", allow_download=False)
    assert loaded.info.class_names[0] == weights.meta["categories"][0]
    x = torch.rand(1, 3, 224, 224)
    assert loaded.model(x).shape == (1, 1000)
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_state_dict_checkpoint_round_trip_and_prefixes():
    state = resnet18(num_classes=5).state_dict()
    for blob in (state, {"state_dict": state}, {f"module.{k}": v for k, v in state.items()}):
        loaded = load_checkpoint(to_bytes(blob), "resnet18", class_names=tuple("abcde"))
        assert loaded.class_names == tuple("abcde")
        for k, v in loaded.model.net.state_dict().items():
            assert torch.equal(v, state[k])


def test_mismatched_checkpoint_reports_keys():
    state = resnet18(num_classes=10).state_dict()
    state.pop("layer1.0.conv1.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(to_bytes(state), "resnet18")
    assert e.value.missing == ["layer1.0.conv1.weight"] and e.value.unexpected == ["extra.weight"]
    assert "layer1.0.conv1.weight" in str(e.value)
    state = resnet18(num_classes=10).state_dict()
    with pytest.raises(CheckpointMismatchError, match="2 shape mismatches: fc.weight \(10, 512\) vs \(5, 512\)"):
        load_checkpoint(to_bytes(state), "resnet18", num_classes=5)
    with pytest.raises(CheckpointMismatchError, match="missing keys: classifier"):
        load_checkpoint(to_bytes(state), "vgg16", num_classes=10)


def test_non_checkpoint_files_and_unknown_arch():
    for junk in (b"not a checkpoint", to_bytes([1, 2, 3])):
        with pytest.raises(ModelLoadError):
            load_checkpoint(junk, "resnet18")
    with pytest.raises(ModelLoadError, match="Unknown architecture"):
        load_checkpoint(to_bytes(resnet18().state_dict()), "no_such_arch")
    with pytest.raises(ModelLoadError, match="Unknown model"):
        models.load_model("no_such_model")


def test_torchscript_checkpoint(monkeypatch):
    monkeypatch.setenv("SPADE_ALLOW_TORCHSCRIPT", "1")
    net = tiny_vgg(num_classes=7).net
    scripted = torch.jit.trace(net, torch.rand(1, 3, 32, 32))
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    loaded = load_checkpoint(buf.getvalue(), "ignored", input_size=32)
    assert loaded.info.arch == "torchscript" and len(loaded.class_names) == 7
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded.model.net(x), net(x))


def test_preprocess_gives_model_sized_unit_range_tensor():
    from PIL import Image

    info = models.ModelInfo("m", "m", "checkpoint", "tiny", 32, 36)
    loaded = models.LoadedModel(info, tiny_vgg())
    t = loaded.preprocess(Image.new("RGB", (100, 50), (255, 0, 0)))
    assert t.shape == (3, 32, 32) and float(t.max()) <= 1.0 and float(t[0].min()) == 1.0
