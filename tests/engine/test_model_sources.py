"""Model sources beyond the testbed (spade_engine/models.py): timm by name and as an upload architecture, any
torchvision classifier, and what SPADE can prune in transformers (PruneResult.dense_layers). Offline, random
weights, timm's tiny `test_*` models."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torchvision
from torchvision.models.vision_transformer import VisionTransformer

from spade_engine import engine as engine_module
from spade_engine import models
from spade_engine.engine import PruneConfig, SpadeEngine
from spade_engine.models import ModelLoadError, WeightsUnavailableError, load_checkpoint

TIMM_VIT = "timm:test_vit"  # 0.3 M parameters, 160 px


def to_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache (where timm's pretrained weights live)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


# ---------------------------------------------------------------------------------------------------- timm


def test_listed_timm_models_carry_timms_own_preprocessing():
    pytest.importorskip("timm")
    listed = {m.name: m for m in models.list_models() if m.family == "timm"}
    assert set(listed) == set(models.TIMM_MODELS)
    for name, info in listed.items():
        data = models.timm_data_config(name)
        assert info.input_size == data["input_size"][-1] and info.mean == pytest.approx(data["mean"])
        assert info.std == pytest.approx(data["std"]) and len(info.class_names) == 1000
        assert info.resize == math.floor(info.input_size / data["crop_pct"])


def test_timm_offline_without_cache_gives_the_typed_error(empty_hub):
    pytest.importorskip("timm")
    with pytest.raises(WeightsUnavailableError) as e:
        models.load_model(TIMM_VIT, allow_download=False)
    assert "Hugging Face hub cache" in str(e.value) and "timm.create_model('test_vit'" in str(e.value)
    with pytest.raises(ModelLoadError, match="timm has no model"):
        models.load_model("timm:no_such_net", allow_download=False)


def test_timm_weights_come_from_the_hub_cache(empty_hub):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("test_vit").eval()
    snapshot = empty_hub / "models--timm--test_vit.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, snapshot / "model.safetensors")
    (empty_hub / "models--timm--test_vit.r160_in1k" / "refs").mkdir()
    (empty_hub / "models--timm--test_vit.r160_in1k" / "refs" / "main").write_text("abc123")
    loaded = models.load_model(TIMM_VIT, allow_download=False)
    assert loaded.info.family == "timm" and loaded.info.input_size == 160
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(loaded.model.normalize(x)))


def test_timm_architecture_upload_as_safetensors():
    timm = pytest.importorskip("timm")
    from safetensors.torch import save

    net = timm.create_model("test_resnet", num_classes=3).eval()
    data = save({f"model.{k}": v.contiguous() for k, v in net.state_dict().items()})
    loaded = load_checkpoint(data, "timm:test_resnet", input_size=64, class_names=("a", "b", "c"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(loaded.model.normalize(x)))


# ----------------------------------------------------------------------------------------------- torchvision


def test_any_torchvision_classifier_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    listed = {m.name for m in models.list_models()}
    assert {"vit_b_16", "swin_t"} <= listed
    info = models.get_info("torchvision:squeezenet1_1")
    assert info.family == "torchvision" and len(info.class_names) == 1000 and info.input_size == 224
    with pytest.raises(WeightsUnavailableError, match="squeezenet1_1"):
        models.load_model("torchvision:squeezenet1_1", allow_download=False)
    classifiers = set(torchvision.models.list_models(module=torchvision.models))
    assert classifiers <= set(models.architectures())


def test_upload_for_a_torchvision_arch_with_a_conv_head():
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(num_classes=3).eval()  # the head is a 1x1 conv, not a Linear
    loaded = load_checkpoint(to_bytes(net.state_dict()), "squeezenet1_1", input_size=64)
    assert len(loaded.class_names) == 3


# ------------------------------------------------------------------------------------- SPADE on transformers


def spade(model, size: int, config=0.5):
    engine = SpadeEngine(model)
    return engine.prune(
        engine.prepare(torch.rand(3, size, size, generator=torch.Generator().manual_seed(0)), 4), config
    )[1]


def test_torchvision_vit_reports_the_attention_projections_it_cannot_prune():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=4)  # fmt: skip
    result = spade(models.info.wrap(vit, models.ModelInfo("v", "v", "checkpoint", "vit", 32, 32)), 32)
    attn = "net.encoder.layers.encoder_layer_0.self_attention"
    assert f"{attn}.out_proj" not in result.layer_sparsity
    assert result.dense_layers[f"{attn}.out_proj"] == engine_module.FUNCTIONAL
    assert result.dense_layers[f"{attn}.in_proj_weight"] == engine_module.FUNCTIONAL
    assert "net.encoder.layers.encoder_layer_0.mlp.0" in result.layer_sparsity
    assert "settings" in result.dense_layers["net.conv_proj"]  # the first conv, kept dense by default


def test_timm_vit_attention_projections_are_pruned():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = models.info.wrap(
        timm.create_model("test_vit", num_classes=3), models.ModelInfo("t", "t", "timm", "t", 160, 160)
    )
    result = spade(model, 160, PruneConfig(0.5))
    assert any(name.endswith("attn.qkv") for name in result.layer_sparsity)
    assert not any(why == engine_module.FUNCTIONAL for why in result.dense_layers.values())


def test_torchscript_layers_are_reported_dense(monkeypatch):
    monkeypatch.setenv("SPADE_ALLOW_TORCHSCRIPT", "1")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2))  # fmt: skip
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buf)
    result = spade(load_checkpoint(buf.getvalue(), "ignored", input_size=16).model, 16)
    assert result.layer_sparsity == {} and set(result.dense_layers.values()) == {engine_module.SCRIPTED}
    assert len(result.dense_layers) == 2
