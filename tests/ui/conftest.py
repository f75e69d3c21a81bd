"""Fixtures for the Streamlit UI tests: a tiny seeded testbed model and examples, and an AppTest factory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
TINY = "ui_tiny"
TINY_CLASSES = ["circle", "square", "stripe"]
PATCH = [20, 20, 28, 28]  # (left, top, right, bottom) of the trojan patch in ex_trojan.png


def tiny_net(num_classes: int) -> nn.Module:
    """Three 3x3 convs and a linear head: prunable, fast on 32 px images."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )  # fmt: skip


def write_tiny_assets(root: Path) -> tuple[Path, Path]:
    """A testbed card + weights and three example PNGs (one with a trojan patch) under `root`."""
    models_dir, examples_dir = root / "models", root / "examples"
    models_dir.mkdir(parents=True)
    examples_dir.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(tiny_net(len(TINY_CLASSES)).state_dict(), models_dir / f"{TINY}.pt")
    card = dict(name=TINY, title="UI tiny (testbed)", arch="ui_tiny_arch", image_size=32, class_names=TINY_CLASSES,
                weights=f"{TINY}.pt")  # fmt: skip
    (models_dir / f"{TINY}.json").write_text(json.dumps(card))
    rng = np.random.default_rng(0)
    index = []
    for i, name in enumerate(["ex_clean.png", "ex_trojan.png", "ex_other.png"]):
        pixels = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        if name == "ex_trojan.png":
            pixels[PATCH[1] : PATCH[3], PATCH[0] : PATCH[2]] = (255, 0, 255)
        Image.fromarray(pixels).save(examples_dir / name)
        index.append({"file": name, "class": TINY_CLASSES[i], "facet": i % 2, "trojan": name == "ex_trojan.png",
                      "patch_box": PATCH if name == "ex_trojan.png" else None})  # fmt: skip
    (examples_dir / "index.json").write_text(json.dumps({"examples": index}))
    return models_dir, examples_dir


@pytest.fixture(autouse=True)
def _offline(isolated_app):
    """Every test here runs in `isolated_app` (tests/conftest.py)."""


@pytest.fixture
def tiny_assets(monkeypatch, tmp_path):
    """Point the model registry and the examples at the tiny model (only testbed model, so the default)."""
    from pages.ui import cache
    from spade_engine import models, paths

    models_dir, examples_dir = write_tiny_assets(tmp_path / "assets")
    archs = {"ui_tiny_arch": tiny_net}
    monkeypatch.setattr(paths, "MODELS", models_dir)
    monkeypatch.setattr(models.build, "architectures", lambda: archs)
    monkeypatch.setattr(cache, "EXAMPLES_DIR", examples_dir)
    return examples_dir


def make_app(**state) -> AppTest:  # noqa: F821
    """AppTest of app.py with session state preset (e.g. fewer views for speed)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=300)
    for key, value in state.items():
        at.session_state[key] = value
    return at
