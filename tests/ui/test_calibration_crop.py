"""The default smallest crop of the calibration views comes from the model card."""

from pages.ui.spade_controls import calibration_crop
from spade_engine.models import get_info, spade_defaults


def test_card_sets_the_crop_and_unknown_models_get_the_reference_default():
    assert calibration_crop("testbed_resnet") == get_info("testbed_resnet").card["spade"]["crop_min"] == 1.0
    assert calibration_crop("resnet18") == 0.2  # torchvision models: the SPADE reference's 0.2
    assert calibration_crop("no_such_model") == 0.2
    assert calibration_crop(None) == 0.2
    assert spade_defaults("testbed_resnet") == {"sparsity": 0.8, "crop_min": 1.0}
    assert spade_defaults("resnet18") == spade_defaults(None) == {"sparsity": 0.9, "crop_min": 0.2}


def test_card_sets_the_solver_and_everything_else_gets_the_sweep(tmp_path, monkeypatch):
    from spade_engine import models

    assert models.spade_solver("testbed_v2_resnet") == get_info("testbed_v2_resnet").card["spade"]["solver"] == "obc"
    assert models.spade_solver("testbed_resnet") == models.spade_solver("resnet18") == "sparsegpt"
    assert models.spade_solver(None) == models.spade_solver("no_such_model") == "sparsegpt"
    card = dict(get_info("testbed_resnet").card, spade={"solver": "magic"})  # an unknown solver is not used
    monkeypatch.setattr(
        models, "get_info", lambda name: models.ModelInfo(**{**vars(get_info("testbed_resnet")), "card": card})
    )
    assert models.spade_solver("testbed_resnet") == "sparsegpt"


def test_the_sidebar_starts_at_the_cards_views_and_keeps_a_users_choice():
    from streamlit.testing.v1 import AppTest

    def page(model_name):
        import streamlit as st

        from pages.ui.spade_controls import spade_controls

        st.session_state["views"] = spade_controls(model_name=model_name, profiles=False).n_aug

    lite = AppTest.from_function(page, args=("efficientnet_lite0",)).run()
    assert lite.session_state["views"] == 32 and not lite.exception  # the Lite cards' `spade.views`
    assert AppTest.from_function(page, args=("testbed_resnet",)).run().session_state["views"] == 64
    lite.sidebar.select_slider[0].set_value(128).run()
    assert lite.session_state["views"] == 128
