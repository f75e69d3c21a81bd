"""The teaching tour runs in AppTest on the shipped trojaned testbed model, every step with a live result."""

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import seeded_tiny_net

TOUR = Path(__file__).resolve().parents[2] / "pages" / "2_Teaching_tour.py"
SHIPPED = "testbed_v2_resnet"  # pages/ui/tour.TOUR_MODEL


@pytest.fixture
def fast(tmp_path, monkeypatch):
    monkeypatch.setenv("SPADE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPADE_DEVICE", "cpu")
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def tour(**state) -> AppTest:
    at = AppTest.from_file(str(TOUR), default_timeout=600)
    at.session_state["tour.n_aug"] = 8  # fewer views and visualisation steps: the test checks wiring, not quality
    at.session_state["tour.steps"] = 8
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def test_tour_runs_all_six_steps_on_the_shipped_model(fast):
    at = tour()
    assert not at.exception, at.exception
    assert [h.value[0] for h in at.header] == list("123456")
    assert not at.info  # every module has landed: no step falls back to a message
    assert len(at.get("plotly_chart")) == 4  # Hessian, mask, predictions, saliency
    assert len(at.get("image")) >= 6  # sample, views, two facets, dense and SPADE visualisations
    layers = at.selectbox(key="tour.layer")
    assert len(layers.options) > 3
    at = layers.select(layers.options[-2]).run()  # another layer's Hessian, from the cached trace
    assert not at.exception
    assert len(at.success) + len(at.warning) == 1  # the pruned network's verdict is shown


def test_tour_opens_on_the_demo_sample_and_says_how_it_was_chosen(fast):
    from pages.ui import keys
    from pages.ui import tour as ui

    assert ui.TOUR_MODEL == SHIPPED
    demo = ui.demo_entry("v2")
    x, mask, target, _, cls, facet = ui.tour_demo("v2", 128)
    assert (cls, facet, target) == (demo["class"], demo["facet"], demo["label"])
    x0, y0, x1, y1 = demo["patch_box"]
    assert mask[y0:y1, x0:x1].sum() == mask.sum() > 0  # the regenerated trojan lies in the shipped box
    at = tour()
    assert not at.exception, at.exception
    assert at.sidebar.radio(key=keys.TOUR_SOURCE).value == "demo"
    assert any("Why this sample" in c.value and "median" in c.value for c in at.caption)
    sample_text = next(m.value for m in at.markdown if m.value.startswith("This image shows"))
    assert demo["class_name"] in sample_text


def test_tour_without_the_shipped_model_says_so(fast, fake_assets):
    at = tour()
    assert not at.exception
    assert "testbed model" in at.info[0].value and not at.header


@pytest.fixture(params=["v1", "v2"])
def tiny_tour_model(request, fast, fake_assets):
    """A random tiny 32 px net registered as the tour's model, its card naming testbed v1 or v2; returns the
    generator module."""
    from spade_engine.testbed import generator

    data = generator(request.param)
    fake_assets.add(SHIPPED, "tour_tiny", seeded_tiny_net, data.CLASS_NAMES, title="Tiny tour", testbed=request.param)
    return data


def test_tour_shows_the_sample_and_trojan_of_the_model_generator(tiny_tour_model):
    """The sample comes from the model's generator; v1 offers every class but the target and its one patch, v2
    every class and, where both apply, a choice of its two trojans, each described with its own target."""
    from spade_engine import testbed

    data = tiny_tour_model
    at = tour(**{"tour.source": "pick"})
    assert not at.exception, at.exception
    assert [h.value[0] for h in at.header] == list("123456")
    classes = at.sidebar.selectbox(key="tour.class")
    names = testbed.trojan_names(data)
    sample_text = next(m.value for m in at.markdown if m.value.startswith("This image shows"))
    cls, facet = classes.value, at.sidebar.radio(key="tour.facet").value
    assert f"**{data.FACETS[cls][facet]}**" in sample_text
    if data.__name__.endswith("v2.data"):
        assert classes.options == [data.CLASS_NAMES[c] for c in range(len(data.CLASS_NAMES))]
        trojan = at.sidebar.radio(key=f"tour.trojan.{cls}")
        assert trojan.options == list(names) and f"trojan {names[0]} pasted" in sample_text
        at = trojan.set_value(1).run()
        assert not at.exception, at.exception
        sample_text = next(m.value for m in at.markdown if m.value.startswith("This image shows"))
        assert f"trojan {names[1]} pasted" in sample_text
    else:
        assert data.CLASS_NAMES[data.TROJAN_TARGET] not in classes.options and len(classes.options) == 9
        assert f"trojan {names[0]} pasted" in sample_text
        assert not [r for r in at.sidebar.radio if r.key.startswith("tour.trojan")]  # one trojan: no choice
