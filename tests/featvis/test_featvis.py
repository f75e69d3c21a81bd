"""Lucent feature visualisation: real optimisation runs at tiny sizes (`spade_engine/featvis.py`)."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from spade_engine import featvis as fv

CFG = fv.FeatVisConfig(image_size=24, steps=24, lr=0.05, seed=3)
ENGINE = Path(__file__).resolve().parents[2] / "spade_engine"


@pytest.mark.parametrize("kind", sorted(fv.OBJECTIVES))
def test_objective_goes_down_and_image_is_valid(tiny_model, kind):
    target = {
        "channel": fv.channel_target("net.2", 5),
        "unit": fv.unit_target("net.2", 5, (3, 9)),
        "class": fv.class_target(1),
    }[kind]
    result = fv.render(tiny_model, target, CFG)
    assert result.image.shape == (24, 24, 3) and result.image.dtype == np.float32
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert len(result.trace) == CFG.steps
    assert result.trace[-4:].mean() < result.trace[:4].mean()  # loss = -activation goes down


def test_model_untouched_no_grads(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    fv.render(tiny_model, fv.channel_target("net.0", 1), CFG)
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in tiny_model.parameters())  # hooks: tests/engine/test_hook_hygiene.py
    assert not tiny_model.training


def test_deterministic_per_seed(tiny_model):
    target = fv.channel_target("net.2", 2)
    a, b = fv.render(tiny_model, target, CFG), fv.render(tiny_model, target, CFG)
    c = fv.render(tiny_model, target, fv.FeatVisConfig(image_size=24, steps=24, seed=4))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.trace, b.trace)
    assert not np.array_equal(a.image, c.image)


def test_lucent_style_names_and_range_errors(tiny_model):
    assert fv.resolve_layer(tiny_model, "net_2") is tiny_model.net[2]
    assert fv.canonical_layer(tiny_model, "net_2") == "net.2"
    with pytest.raises(ValueError, match="out of range"):
        fv.check_target(tiny_model, fv.channel_target("net.2", 8), 24)
    with pytest.raises(ValueError, match="outside"):
        fv.check_target(tiny_model, fv.unit_target("net.2", 0, (30, 0)), 24)
    with pytest.raises(ValueError, match="no spatial positions"):
        fv.check_target(tiny_model, fv.unit_target("net.6", 0, (0, 0)), 24)
    with pytest.raises(KeyError, match="Unknown layer"):
        fv.resolve_layer(tiny_model, "net.9")


def test_cache_returns_identical_image_without_optimising(tiny_model, tmp_path):
    steps = []
    target = fv.channel_target("net.2", 6)
    kw = dict(
        model_name="tiny", variant="dense", sparsity=0.0, directory=tmp_path, progress=lambda d, t: steps.append(d)
    )
    first = fv.render_cached(tiny_model, target, CFG, **kw)
    assert len(steps) == CFG.steps and not first.from_cache
    second = fv.render_cached(tiny_model, fv.channel_target("net_2", 6), CFG, **kw)  # Lucent name, same layer
    assert len(steps) == CFG.steps and second.from_cache  # no optimisation step ran
    assert np.array_equal(first.image, second.image) and np.array_equal(first.trace, second.trace)
    fv.render_cached(tiny_model, target, CFG, **{**kw, "variant": fv.sample_hash(torch.zeros(3, 4, 4))})
    assert len(steps) == 2 * CFG.steps  # another network variant is another entry


def test_cache_misses_when_weights_change(tiny_model, tmp_path):
    steps = []
    kw = dict(model_name="tiny", directory=tmp_path, progress=lambda d, t: steps.append(d))
    fv.render_cached(tiny_model, fv.channel_target("net.2", 1), CFG, **kw)
    with torch.no_grad():
        tiny_model.net[0].weight[0, 0, 0, 0] += 0.5  # "retrained" under the same name
    again = fv.render_cached(tiny_model, fv.channel_target("net.2", 1), CFG, **kw)
    assert not again.from_cache and len(steps) == 2 * CFG.steps


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPADE_CACHE_DIR", str(tmp_path))
    assert fv.cache_dir() == tmp_path / "featvis"
    assert fv.cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("SPADE_CACHE_DIR")
    assert fv.cache_dir() == Path("~/.cache/spade_debugger/featvis").expanduser()


def test_only_featvis_imports_lucent():
    offenders = []
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "lucent" for n in names) and path.name != "featvis.py":
                offenders.append(str(path))
    assert not offenders


@pytest.mark.parametrize(
    "config",
    [
        fv.FeatVisConfig(image_size=24, steps=24, fft=False, decorrelate=False, transforms=False, lr=0.1),
        fv.FeatVisConfig(image_size=20, steps=24, input_size=32),  # optimised at 20 px, seen by the model at 32
    ],
    ids=["pixels-plain", "resized-input"],
)
def test_other_parameterisations(tiny_model, config):
    result = fv.render(tiny_model, fv.channel_target("net.2", 5), config)
    assert result.image.shape == (config.image_size, config.image_size, 3)
    assert result.trace[-4:].mean() < result.trace[:4].mean()
