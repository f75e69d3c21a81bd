"""The teaching tour runs in AppTest on the shipped trojaned testbed model, every step with a live result."""

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from spade_engine.models import TESTBED_DIR

TOUR = Path(__file__).resolve().parents[2] / "pages" / "2_Teaching_tour.py"
SHIPPED = "testbed_resnet"


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


@pytest.mark.skipif(not (TESTBED_DIR / f"{SHIPPED}.json").exists(),
                    reason=f"the shipped testbed model assets/models/{SHIPPED}.json has not landed yet")  # fmt: skip
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


def test_tour_without_the_shipped_model_says_so(fast, monkeypatch, tmp_path):
    from spade_engine import models

    monkeypatch.setattr(models, "TESTBED_DIR", tmp_path / "no_models")
    at = tour()
    assert not at.exception
    assert "testbed model" in at.info[0].value and not at.header
