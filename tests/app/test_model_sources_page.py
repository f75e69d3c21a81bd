"""Real models and files through the Debugger page (AppTest): .safetensors and timm uploads, a one-logit sigmoid
detector, a scripted model returning a named tuple, a transformer whose LRP is refused with a notice and whose
GradCAM layer the user picks, and timm models offline."""

from __future__ import annotations

import io
from typing import NamedTuple

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from pages.ui import keys
from tests.app.conftest import make_app, tiny_net

FEW_VIEWS = {keys.scoped(keys.DEBUGGER, keys.N_AUG): 8}


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def tiny_vit(num_classes: int) -> VisionTransformer:
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=num_classes)  # fmt: skip
    with torch.no_grad():
        vit.heads.head.weight.normal_(0, 0.5)
    return vit


@pytest.fixture
def extra_archs(tiny_assets, fake_assets):
    """The tiny registry of `tiny_assets` plus a tiny ViT and (with timm) timm's tiny ResNet."""
    fake_assets.archs["ui_vit"] = tiny_vit
    try:
        import timm

        fake_assets.archs["timm:test_resnet"] = lambda k: timm.create_model("test_resnet", num_classes=k)
    except ImportError:
        pass
    return fake_assets.archs


def upload(arch: str | None, name: str, data: bytes, **state):
    preset = {**FEW_VIEWS, keys.MODEL: "__checkpoint__", keys.CKPT_SIZE: 32, **state}
    if arch:
        preset[keys.CKPT_ARCH] = arch
    at = make_app(**preset).run()
    at.sidebar.file_uploader(key=keys.WIDGET + keys.CKPT_FILE).set_value((name, data, "application/octet-stream"))
    return at.run()


def test_safetensors_upload_runs_the_page(extra_archs):
    safetensors = pytest.importorskip("safetensors.torch")
    data = safetensors.save({f"_orig_mod.{k}": v.contiguous() for k, v in tiny_net(3).state_dict().items()})
    at = upload("ui_tiny_arch", "weights.safetensors", data)
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    assert {"predictions"} <= {c.key for c in at.get("plotly_chart")}


def test_timm_architecture_upload_runs_the_page(extra_archs):
    timm = pytest.importorskip("timm")
    buf = io.BytesIO()
    torch.save({"state_dict": timm.create_model("test_resnet", num_classes=4).state_dict()}, buf)
    at = upload("timm:test_resnet", "timm.pth", buf.getvalue())
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)


def test_one_logit_detector_shows_its_class_names_and_sigmoid_probability(extra_archs):
    torch.manual_seed(0)
    net = tiny_net(1)
    with torch.no_grad():
        net[-1].bias.fill_(-2.2)  # sigmoid ~0.1
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    at = upload("ui_tiny_arch", "detector.pt", buf.getvalue(), **{keys.CKPT_CLASSES: "normal\ndefect"})
    assert not at.exception, at.exception
    shown = {m.label: (m.value, m.delta) for m in at.metric}["Dense predicts"]
    assert shown[0] in ("normal", "defect") and shown[1] != "100.0%"


class Outputs(NamedTuple):
    logits: torch.Tensor
    features: torch.Tensor


class NamedOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = tiny_net(3)

    def forward(self, x) -> Outputs:
        return Outputs(self.body(x), x)


def test_scripted_named_tuple_model_runs_and_hook_methods_say_why_not(extra_archs, monkeypatch):
    monkeypatch.setenv("SPADE_ALLOW_TORCHSCRIPT", "1")
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(NamedOutputs().eval()), buf)
    at = upload(None, "googlenet_like.pt", buf.getvalue(), **{keys.DEBUGGER_METHODS: ["Saliency", "GradCAM"]})
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    assert "debugger.sal.Saliency" in {c.key for c in at.get("plotly_chart")}
    assert "GradCAM is not available for TorchScript" in _texts(at.warning)
    assert "TorchScript" in _texts(at.info)  # its layers stay dense, and the page says so


def test_transformer_refuses_lrp_with_a_notice_and_offers_the_gradcam_layer(extra_archs):
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(tiny_vit(3).state_dict(), buf)
    at = upload("ui_vit", "vit.pt", buf.getvalue(), **{keys.DEBUGGER_METHODS: ["LRP", "GradCAM"]})
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    assert "LRP is not available for this model" in _texts(at.warning)
    charts = {c.key for c in at.get("plotly_chart")}
    assert "debugger.sal.GradCAM" in charts and "debugger.sal.LRP" not in charts
    assert "in_proj_weight" in _texts(at.info)  # attention projections stay dense under SPADE
    at.toggle(key="debugger.pick_gradcam_layer").set_value(True).run()
    picker = at.selectbox(key=next(s.key for s in at.selectbox if (s.key or "").startswith("debugger.gradcam_layer")))
    assert picker.options[0].startswith("default (") and "encoder_layer_0.ln_1" in picker.options[0]
    picker.set_value("conv_proj").run()
    assert not at.exception and not at.error, _texts(at.error)


def test_timm_models_are_listed_and_offline_gives_a_clear_error(tiny_assets, tmp_path, monkeypatch):
    pytest.importorskip("timm")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    at = make_app(**FEW_VIEWS).run()
    picker = at.sidebar.selectbox(key=keys.WIDGET + keys.MODEL)
    assert "ConvNeXt-Tiny (timm, ImageNet) — weights not downloaded" in picker.options  # labels, not names
    picker.set_value("timm:convnext_tiny").run()
    assert not at.exception, at.exception
    assert "Hugging Face hub cache" in _texts(at.error)
