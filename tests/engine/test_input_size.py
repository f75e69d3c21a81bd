"""A model built for one input size (a ViT's learned position embeddings; here a flatten + linear head) loaded
with another: a sentence naming the size at load time, and `python -m spade_engine` ends a user's error with one
line and exit status 2."""

import io
import subprocess
import sys

import pytest
import torch
from torch import nn

from spade_engine import models
from spade_engine.models import ModelLoadError, load_checkpoint


def fixed_32(num_classes: int) -> nn.Module:
    """Runs only on 32 px inputs: an 8x8 grid of 4 channels, flattened into the head."""
    return nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.Flatten(), nn.Linear(4 * 8 * 8, num_classes))


@pytest.fixture
def weights(monkeypatch) -> bytes:
    builders = models.build.architectures()
    monkeypatch.setattr(models.build, "architectures", lambda: {**builders, "fixed_32": fixed_32})
    buf = io.BytesIO()
    torch.save(fixed_32(3).state_dict(), buf)
    return buf.getvalue()


def test_the_trained_size_loads(weights):
    loaded = load_checkpoint(weights, "fixed_32", input_size=32)
    assert loaded.model(torch.rand(1, 3, 32, 32)).shape == (1, 3)


def test_another_size_is_refused_at_load_time_in_words(weights):
    with pytest.raises(ModelLoadError) as e:
        load_checkpoint(weights, "fixed_32", input_size=48)
    text = str(e.value)
    assert "does not run on 48×48 px images" in text and "Set the input size" in text


def test_a_timm_vit_names_its_own_size():
    timm = pytest.importorskip("timm")
    buf = io.BytesIO()
    torch.save(timm.create_model("vit_tiny_patch16_224", num_classes=3).state_dict(), buf)
    with pytest.raises(ModelLoadError, match="built for 224×224 px"):
        load_checkpoint(buf.getvalue(), "timm:vit_tiny_patch16_224", input_size=256)


def test_python_dash_m_ends_a_users_error_with_one_line_and_status_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "spade_engine", "explain", str(tmp_path), "--model", "no_such_model", "--out",
         str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Cannot load the model: Unknown model 'no_such_model'")
