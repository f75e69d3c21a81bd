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


def test_depthwise_separable_networks_without_a_card_get_the_lite_cards_defaults_with_the_reason():
    """torchvision's and timm's MobileNets and EfficientNets share EfficientNet-Lite's blocks: asymmetric calibration
    at 70% on 32 views, and the reason says it was measured on Lite0, not on them; other networks keep the
    SPADE reference's settings, and a shipped card always wins over the rule."""
    from spade_engine import models
    from spade_engine.settings import SpadeSettings

    lite = SpadeSettings().resolved("efficientnet_lite0")
    for name in ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "timm:efficientnet_b0",
                 "torchvision:mnasnet1_0"):  # fmt: skip
        got = SpadeSettings().resolved(name)
        assert (got.calibration, got.sparsity, got.n_aug) == (lite.calibration, lite.sparsity, lite.n_aug)
        assert "Not measured on this network" in models.spade_why(name)
    for name in ("resnet18", "timm:convnext_tiny", "vit_b_16", None):
        got = SpadeSettings().resolved(name)
        assert (got.calibration, got.sparsity, got.n_aug) == ("dense", 0.9, 64) and not models.spade_why(name)
    assert models.spade_section("testbed_resnet") == get_info("testbed_resnet").card["spade"]


def test_the_sidebar_names_the_family_rule_as_the_source():
    from streamlit.testing.v1 import AppTest

    def page(model_name):
        from pages.ui.spade_controls import spade_controls

        spade_controls(model_name=model_name, profiles=False)

    captions = lambda at: " ".join(c.value for c in at.sidebar.caption)  # noqa: E731
    rule = AppTest.from_function(page, args=("mobilenet_v2",)).run()
    assert "The default for this family recommends" in captions(rule) and "Not measured" in captions(rule)
    card = AppTest.from_function(page, args=("efficientnet_lite0",)).run()
    assert "The model card recommends" in captions(card)
