"""The three related-method pages in `streamlit.testing.v1.AppTest`: a tiny seeded testbed-like model (always),
and the shipped testbed model (once it is trained)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pages.ui import keys, sparse_layer

ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    name: ROOT / "pages" / f"{name}.py"
    for name in ("5_Sparse_decision_layer", "6_Critical_pathways", "7_Sobol_regions")
}
SHIPPED = "testbed_resnet"
TROJAN_EXAMPLE = "testbed_c1_f0_trojan.png"
FAST = {
    keys.SPARSE_N: 200,
    keys.SPARSE_LAMBDAS: 10,
    keys.SOBOL_N: 8,
    keys.WIDGET + keys.scoped(keys.SOBOL, keys.N_AUG): 8,
    keys.WIDGET + keys.SAMPLE_EXAMPLE: TROJAN_EXAMPLE,
    keys.SAMPLE_EXAMPLE: TROJAN_EXAMPLE,
}


def _tiny_net(num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, num_classes),
    )  # fmt: skip


@pytest.fixture
def tiny_testbed(fake_assets):
    """A random tiny 'testbed' model at 32 px as the only registered model (shipped examples as samples)."""
    from spade_engine.testbed import data

    fake_assets.add("rel_tiny", "rel_tiny", _tiny_net, data.CLASS_NAMES, title="Tiny", trojan={"fraction": 0.2})


@pytest.fixture
def tiny_testbed_v2(fake_assets):
    """The tiny model as a testbed v2 model (card `"testbed": "v2"`, v2's class names), the only one registered."""
    from spade_engine.testbed.v2 import data as v2

    fake_assets.add("rel_tiny_v2", "rel_tiny", _tiny_net, v2.CLASS_NAMES, title="Tiny v2", trojan={"fraction": 0.2},
                    testbed="v2")  # fmt: skip


def _app(page: str, **state):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES[page]), default_timeout=600)
    for key, value in {**FAST, **state}.items():
        at.session_state[key] = value
    return at


def _ok(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _text(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_sparse_page(tiny_testbed):
    at = _app("5_Sparse_decision_layer").run()
    _ok(at)
    assert [m.label for m in at.metric][:3] == ["Dense head accuracy", "Sparse layer accuracy", "Features per class"]
    assert "Trojan target" in _text(at.info)
    assert len(at.get("plotly_chart")) >= 2  # path and class weights
    assert len(at.get("image")) >= 1  # top-activating images
    assert at.selectbox(key=keys.SPARSE_METHOD).value == "Saliency"  # dense head vs sparse FC maps
    n_charts = len(at.get("plotly_chart"))
    at.slider(key=keys.SPARSE_BUDGET).set_value(2).run()  # a new budget: a new path point, no refit
    _ok(at)
    assert float(at.metric[2].value) <= 2
    assert len(at.get("plotly_chart")) == n_charts


def test_sparse_page_on_a_v2_model_reports_each_trojan(tiny_testbed_v2):
    """A v2 model is fitted on v2 images at its input size, and each of v2's two trojans gets its own finding."""
    from spade_engine.testbed.v2 import data as v2

    at = _app("5_Sparse_decision_layer", **{keys.SPARSE_BUDGET: 2}).run()
    _ok(at)
    notes = [str(i.value) for i in at.info if "Trojan target" in str(i.value)]
    assert [n.split("**")[1] for n in notes] == [v2.CLASS_NAMES[t.target] for t in v2.TROJANS]
    assert at.selectbox(key=keys.SPARSE_CLASS).value == v2.TROJANS[0].target
    batch = sparse_layer.testbed_batch("v2", 200, sparse_layer.TESTBED_SEED, 0.2, 32)
    targets = sparse_layer.testbed_truth(batch)["trojan_target"]
    assert batch.images.shape[1:] == (3, 32, 32) and set(targets) == {-1, *(t.target for t in v2.TROJANS)}


def test_sparse_page_feature_visualisations(tiny_testbed, monkeypatch):
    monkeypatch.setattr(sparse_layer, "FEATVIS_STEPS", 4)
    at = _app("5_Sparse_decision_layer", **{keys.SPARSE_BUDGET: 2}).run()
    _ok(at)
    n_images = len(at.get("image"))
    at.checkbox(key=keys.SPARSE_FEATVIS).check().run()
    _ok(at)
    assert len(at.get("image")) > n_images  # one visualisation per shown feature


def test_pathways_page(tiny_testbed):
    at = _app("6_Critical_pathways").run()
    _ok(at)
    assert len(at.get("plotly_chart")) == 3
    assert "trojan patch" in _text(at.caption)
    at.slider(key=keys.PATHWAYS_KEEP).set_value(100).run()
    _ok(at)
    assert at.metric[1].value == at.metric[2].value  # keep everything: the gated logit is the dense one
    assert "its gradient is the plain gradient" in _text(at.warning)


def test_sobol_page(tiny_testbed):
    at = _app("7_Sobol_regions").run()
    _ok(at)
    assert "forward passes per network" in _text(at.markdown)  # the cost, before running
    assert "16 regions, N = 8: 144 forward passes" in _text(at.markdown)
    at.button(key=keys.SOBOL_RUN).click().run()
    _ok(at)
    assert len(at.get("plotly_chart")) == 3
    assert [m.label.split(":")[0] for m in at.metric] == ["Dense", "SPADE 90%"]
    at.run()  # computed: shown again without a click
    _ok(at)
    assert len(at.get("plotly_chart")) == 3


def test_pages_without_a_usable_model_do_not_crash(fake_assets):
    """A torchvision model without cached weights stops with a message, not a traceback."""
    # no testbed models (an empty assets root): torchvision first
    for page in PAGES:
        at = _app(page).run()
        assert not at.exception, (page, at.exception)


@pytest.mark.parametrize("page", list(PAGES))
def test_pages_on_shipped_model(page):
    at = _app(page, **{keys.WIDGET + keys.MODEL: SHIPPED, keys.MODEL: SHIPPED, keys.SPARSE_N: 500}).run()
    _ok(at)
    if page.startswith("7"):
        at.button(key=keys.SOBOL_RUN).click().run()
        _ok(at)
        assert len(at.get("plotly_chart")) == 3


def _class_zip(n_per_class: int = 12) -> bytes:
    """A zip in ImageFolder layout: three classes of noisy flat-coloured 32 px images."""
    import io
    import zipfile

    from PIL import Image

    rng, buf = np.random.default_rng(0), io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for c, colour in enumerate([(220, 30, 30), (30, 220, 30), (30, 30, 220)]):
            for i in range(n_per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
                png = io.BytesIO()
                Image.fromarray(pixels).save(png, format="PNG")
                z.writestr(f"set/class{c}/{i}.png", png.getvalue())
    return buf.getvalue()


def test_sparse_page_reads_user_images_only_under_the_data_root_or_from_a_zip(tiny_testbed, monkeypatch, tmp_path):
    """A model without generated data (an uploaded checkpoint): without a data root only a zip is offered; with
    one, a folder outside it is refused with a plain message and no file outside is read."""
    import io

    weights = io.BytesIO()
    torch.save(_tiny_net(3).state_dict(), weights)
    state = {keys.MODEL: "__checkpoint__", keys.WIDGET + keys.MODEL: "__checkpoint__", keys.CKPT_ARCH: "rel_tiny",
             keys.WIDGET + keys.CKPT_ARCH: "rel_tiny", keys.CKPT_SIZE: 32, keys.WIDGET + keys.CKPT_SIZE: 32,
             keys.SPARSE_BUDGET: 2}  # fmt: skip

    def checkpoint_app():
        at = _app("5_Sparse_decision_layer", **state).run()
        at.sidebar.file_uploader(key=keys.WIDGET + keys.CKPT_FILE).set_value(
            ("w.pt", weights.getvalue(), "application/octet-stream")
        )
        return at.run()

    monkeypatch.delenv("SPADE_DATA_ROOT", raising=False)
    at = checkpoint_app()
    _ok(at)
    assert "a zip of your images" in _text(at.info) and "data root" not in _text(at.info)
    assert not [t for t in at.sidebar.text_input if t.key == keys.SPARSE_FOLDER]  # no server folders at all
    at.sidebar.file_uploader(key=keys.SPARSE_ZIP).set_value(("set.zip", _class_zip(), "application/zip")).run()
    _ok(at)
    assert len(at.metric) == 4 and at.selectbox(key=keys.SPARSE_CLASS).options == ["class0", "class1", "class2"]

    root, secret = tmp_path / "data", tmp_path / "secret" / "x"
    root.mkdir()
    secret.mkdir(parents=True)
    monkeypatch.setenv("SPADE_DATA_ROOT", str(root))
    opened = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: opened.append(p) or real_read(p))
    at = checkpoint_app()
    for bad in ("../secret", str(tmp_path / "secret"), "/"):
        at.sidebar.text_input(key=keys.SPARSE_FOLDER).set_value(bad).run()
        _ok(at)
        assert "Cannot use these images" in _text(at.info) and not at.metric
    assert not [p for p in opened if "secret" in str(p)]
