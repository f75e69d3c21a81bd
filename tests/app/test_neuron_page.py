"""The Neuron explorer page (`pages/3_Neuron_explorer.py`) in `streamlit.testing.v1.AppTest`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pages.ui import keys
from pages.ui import neurons as ui
from pages.ui.sample_picker import UPLOAD
from spade_engine import paths
from tests.conftest import seeded_tiny_net

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "pages" / "3_Neuron_explorer.py"
SHIPPED = paths.MODELS / "testbed_resnet.json"
FAST = {keys.NEURONS_STEPS: 8, keys.scoped(keys.NEURONS, keys.N_AUG): 8}


@pytest.fixture
def testbed_example(monkeypatch, tmp_path):
    """One generated testbed example (class 0, facet 1) as the only shipped example; returns its folder."""
    from pages.ui import cache
    from spade_engine.testbed import data

    examples_dir = tmp_path / "examples"
    examples_dir.mkdir()
    image = data.make_sample(0, 1, seed=5).images[0]  # (3, 64, 64)
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(examples_dir / "c0f1.png")
    (examples_dir / "index.json").write_text(
        json.dumps({"examples": [{"file": "c0f1.png", "class": data.CLASS_NAMES[0], "facet": 1, "trojan": False}]})
    )
    monkeypatch.setattr(cache, "EXAMPLES_DIR", examples_dir)
    return examples_dir


@pytest.fixture
def tiny_testbed(fake_assets, testbed_example):
    """A random tiny 'testbed' model at 32 px as the only registered model."""
    from spade_engine.testbed import data

    fake_assets.add("fv_tiny", "fv_tiny", seeded_tiny_net, data.CLASS_NAMES, title="Tiny")


@pytest.fixture
def tiny_v2(fake_assets, testbed_example):
    """The tiny model as a testbed v2 model (its card says `"testbed": "v2"`), with a v2 example added."""
    from pages.ui import cache
    from spade_engine.testbed.v2 import data as v2

    image = v2.make_sample(3, 1, seed=5).images[0]  # (3, 128, 128)
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(testbed_example / "v2.png")
    index = json.loads((testbed_example / "index.json").read_text())
    index["examples"].append({"file": "v2.png", "class": 3, "class_name": v2.CLASS_NAMES[3], "facet": 1, "trojan": False,
                              "testbed": "v2"})  # fmt: skip
    (testbed_example / "index.json").write_text(json.dumps(index))
    fake_assets.add("fv_tiny_v2", "fv_tiny", seeded_tiny_net, v2.CLASS_NAMES, title="Tiny v2", testbed="v2")
    assert cache.testbed_version("fv_tiny_v2") == "v2"


def _app(**state):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=600)
    for key, value in {**FAST, **state}.items():
        at.session_state[key] = value
    return at


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _check_page(at, n_classes: int) -> None:
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    images = at.get("image")
    assert len(images) >= 5  # dense, SPADE, patches, two facet grids
    assert len(at.get("plotly_chart")) == 1
    assert "Multifaceted score" in _texts(at.caption)
    layer = at.selectbox(key=keys.WIDGET + keys.NEURONS_LAYER)
    assert layer.options[-1].startswith(f"{layer.value} (linear, {n_classes} neurons")  # the head by default
    assert len(at.selectbox(key=f"{keys.NEURONS_FACET}.{layer.value}").options) == min(20, n_classes)


def test_page_runs_on_tiny_model(tiny_testbed):
    at = _app().run()
    _check_page(at, 10)
    assert "steps in" in _texts(at.caption)  # optimised now
    at.run()  # same settings again: both visualisations come from the disk cache
    assert not at.exception, at.exception
    assert _texts(at.caption).count("loaded from cache") == 2


def _facet_names(version: str) -> set[str]:
    from spade_engine.testbed import generator

    return {name for pair in generator(version).FACETS for name in pair}


def _captioned_facets(at, version: str) -> set[str]:
    """Facet names of generator `version` counted in the top patches' caption ("red disc ×3, …")."""
    text = _texts(at.caption)
    return {name for name in _facet_names(version) if f"{name} ×" in text}


def test_page_draws_the_testbed_of_a_v2_model(tiny_v2):
    """A v2 model's patches and facets come from v2's generator, at the model's input size, named by v2's facets."""
    from spade_engine.testbed.v2 import data as v2

    at = _app().run()
    _check_page(at, 10)
    assert _captioned_facets(at, "v2") and not _captioned_facets(at, "v1")
    batch = ui.testbed(ui.testbed_count(32), 32, "v2")
    assert batch.images.shape[-1] == 32
    assert torch.equal(batch.images, v2.generate(len(batch), ui.TESTBED_SEED, image_size=32).images)


def test_v1_model_facets_are_v1s(tiny_testbed):
    at = _app().run()
    assert not at.exception, at.exception
    assert _captioned_facets(at, "v1") and not _captioned_facets(at, "v2")


def test_out_of_range_index_gives_a_message(tiny_testbed):
    at = _app(**{keys.NEURONS_PICK: ui.PICKS[2], keys.NEURONS_LAYER: "net.2"}).run()
    assert not at.exception, at.exception
    at.number_input(key=f"{keys.NEURONS_INDEX}.net.2").set_value(12).run()
    assert not at.exception, at.exception
    assert "out of range" in _texts(at.warning)


def test_page_runs_on_shipped_testbed_model(testbed_example):
    at = _app(**{keys.MODEL: "testbed_resnet"}).run()
    _check_page(at, 10)
    assert at.sidebar.selectbox(key=keys.WIDGET + keys.MODEL).value == "testbed_resnet"
    assert "net.layer4.0.conv2" in " ".join(at.selectbox(key=keys.WIDGET + keys.NEURONS_LAYER).options)


def test_torchscript_upload_gets_a_sentence_not_an_exception(tiny_testbed, monkeypatch):
    import io

    from spade_engine.featvis import TORCHSCRIPT_LAYERS

    monkeypatch.setenv("SPADE_ALLOW_TORCHSCRIPT", "1")
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(seeded_tiny_net(10).eval()), buf)
    at = _app(**{keys.MODEL: "__checkpoint__", keys.CKPT_ARCH: "resnet18", keys.CKPT_SIZE: 64,
                 keys.SAMPLE_SOURCE: UPLOAD}).run()  # fmt: skip
    at.sidebar.file_uploader(key=keys.WIDGET + keys.CKPT_FILE).set_value(
        ("tiny.pt", buf.getvalue(), "application/octet-stream")
    )
    png = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(png, "PNG")
    at.run()
    at.sidebar.file_uploader(key=keys.WIDGET + keys.SAMPLE_UPLOAD).set_value(("grey.png", png.getvalue(), "image/png"))
    at.run()
    assert not at.exception, at.exception
    assert TORCHSCRIPT_LAYERS in _texts(at.info)


@pytest.mark.slow
def test_page_runs_on_the_real_network_with_the_shipped_photos():
    """EfficientNet-Lite0 (no testbed): top patches and facets come from the shipped photos and their crops, and
    the captions name the photos they come from."""
    from spade_engine.photos import SOURCES

    at = _app(**{keys.NEURONS_SIZE: 64, keys.MODEL: "efficientnet_lite0"}).run()
    _check_page(at, 1000)
    text = _texts(at.caption)
    assert any(f"{photo} ×" in text for photo in SOURCES)  # which photos the top patches and facets come from
    assert not _captioned_facets(at, "v1") and not _captioned_facets(at, "v2")  # no testbed images
    assert at.sidebar.radio(key=keys.NEURONS_PROBE_SOURCE).value == ui.PHOTOS
    assert "steps in" in text  # real-neuron visualisations, optimised now
