"""Fixtures for the page tests (`streamlit.testing.v1.AppTest`): every test in `isolated_app`, a tiny seeded testbed
model and examples, and an AppTest factory of app.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

from tests.conftest import tiny_cnn

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
TINY = "ui_tiny"
TINY_CLASSES = ["circle", "square", "stripe"]
PATCH = [20, 20, 28, 28]  # (left, top, right, bottom) of the trojan patch in ex_trojan.png


def tiny_net(num_classes: int) -> nn.Module:
    """Three 3x3 convs (8, 16, 16 channels) and a linear head (`tests/conftest.tiny_cnn`): prunable, fast on 32 px."""
    return tiny_cnn(num_classes, widths=(8, 16, 16), strides=(1, 1, 1))


def write_tiny_examples(examples_dir: Path) -> Path:
    """Three example PNGs (one with a trojan patch) and their index.json in `examples_dir`."""
    examples_dir.mkdir(parents=True)
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
    return examples_dir


@pytest.fixture(autouse=True)
def _offline(isolated_app):
    """Every test here runs in `isolated_app` (tests/conftest.py)."""


@pytest.fixture
def tiny_assets(monkeypatch, fake_assets):
    """The tiny model as the only (so the default) testbed model, and its examples as the app's examples."""
    from pages.ui import cache

    fake_assets.add(TINY, "ui_tiny_arch", tiny_net, TINY_CLASSES, title="UI tiny (testbed)")
    examples_dir = write_tiny_examples(fake_assets.root / "examples")
    monkeypatch.setattr(cache, "EXAMPLES_DIR", examples_dir)
    return examples_dir


def make_app(**state) -> AppTest:  # noqa: F821
    """AppTest of app.py with session state preset (e.g. fewer views for speed)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=300)
    for key, value in state.items():
        at.session_state[key] = value
    return at
