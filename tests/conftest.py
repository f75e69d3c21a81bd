"""Fixtures shared by every test package: one thread, an isolated app, tiny nets (`tiny_cnn`, `seeded_tiny_net`,
`frozen`, the `tiny_net` fixture) and a private assets root (`fake_assets`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op thread for the whole suite: the tensors are tiny, and on a shared 2-core machine two OpenMP
    threads run many times slower (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def isolated_app(monkeypatch, tmp_path):
    """For Streamlit page tests: CPU, no network, an empty torch cache and private engine caches under tmp,
    and Streamlit's caches cleared before and after the test."""
    import streamlit as st

    monkeypatch.setenv("SPADE_OFFLINE", "1")
    monkeypatch.setenv("SPADE_DEVICE", "cpu")
    monkeypatch.setenv("SPADE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


# ------------------------------------------------------------------------------------------ tiny nets


def tiny_cnn(num_classes: int, widths: tuple[int, ...] = (8, 8), strides: tuple[int, ...] = (1, 2)) -> nn.Sequential:
    """3x3 convs (`widths` channels, `strides`) with ReLUs, global average pooling and a linear head: prunable,
    fast on 32 px images. Weights from torch's current seed (`seeded_tiny_net` seeds it)."""
    layers: list[nn.Module] = []
    for cin, cout, stride in zip((3, *widths[:-1]), widths, strides, strict=True):
        layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes))


def seeded_tiny_net(num_classes: int) -> nn.Module:
    """`tiny_cnn` (two convs, the second strided) with weights from seed 0 (random, reproducible): the
    architecture tests register as a testbed model."""
    torch.manual_seed(0)
    return tiny_cnn(num_classes)


def frozen(net: nn.Module, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)) -> nn.Module:
    """`net` behind the app's `Classifier` (normalisation inside; [0, 1] images in), eval mode, no gradients
    on its parameters: a model as the app loads it."""
    from spade_engine.models import Classifier

    model = Classifier(net, mean, std).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture
def tiny_net() -> nn.Module:
    """A frozen seeded tiny CNN, 4 classes: Conv(3->8) ReLU Conv(8->8) ReLU GAP Linear(8->4); [0, 1] images."""
    torch.manual_seed(0)
    return frozen(tiny_cnn(4, strides=(1, 1)))


# ------------------------------------------------------------------------------------------ fake assets


class FakeAssets:
    """A private assets root whose models are the only ones the registry lists (`paths.MODELS`, the one
    assets override; once a model is added, the architectures are the ones the cards name)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        from spade_engine import paths

        self.root, self.models = root, root / "models"
        self.models.mkdir(parents=True)
        self.archs: dict = {}
        self._monkeypatch = monkeypatch
        monkeypatch.setattr(paths, "MODELS", self.models)

    def add(self, name: str, arch: str, build, class_names, image_size: int = 32, **card) -> Path:
        """Register model `name`: weights of `build(len(class_names))` from seed 0 and a card naming `arch`.

        Args:
            build: num_classes -> nn.Module (registered as the architecture `arch`).
            card: further card fields (title, testbed, trojan, ...).

        Returns:
            The card's path.
        """
        from spade_engine import models

        torch.manual_seed(0)
        torch.save(build(len(class_names)).state_dict(), self.models / f"{name}.pt")
        self.archs[arch] = build  # the architectures are then these only (the loader's and the pages' one name)
        self._monkeypatch.setattr(models.build, "architectures", lambda: dict(self.archs))
        fields = {"name": name, "title": name, "arch": arch, "image_size": image_size,
                  "class_names": list(class_names), "weights": f"{name}.pt", **card}  # fmt: skip
        path = self.models / f"{name}.json"
        path.write_text(json.dumps(fields))
        return path


@pytest.fixture
def fake_assets(monkeypatch, tmp_path) -> FakeAssets:
    """An empty private assets root (`FakeAssets.add` registers tiny models in it); the shipped models are not
    listed while it is in place."""
    return FakeAssets(tmp_path / "assets", monkeypatch)


CKPT_ARCH, CKPT_SIZE, CKPT_CLASSES = "tb_resnet", 32, 4  # the checkpoint-form tests' architecture


@pytest.fixture(scope="module")
def checkpoint_weights() -> bytes:
    """A `tb_resnet` state_dict with 4 classes (seed 0), saved as `torch.save` writes it, for the checkpoint form."""
    import io

    from spade_engine.models import build_architecture

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(build_architecture(CKPT_ARCH, CKPT_CLASSES).state_dict(), buf)
    return buf.getvalue()
