"""The sidebar pickers on the page (pages/ui/model_picker.py, sample_picker.py, spade_controls.py, state.py): a
refused normalisation stops the page, one kept upload per uploader, profiles read once, the palette. (The
normalisation parser itself: tests/ui/test_model_picker.py.)"""

from __future__ import annotations

import io

import torch

from pages.ui import keys
from spade_engine import colours, profiles
from spade_engine.engine import PruneConfig
from tests.app.conftest import TINY, make_app, tiny_net

FEW_VIEWS = {keys.scoped(keys.DEBUGGER, keys.N_AUG): 16}


def _checkpoint_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(tiny_net(3).state_dict(), buf)
    return buf.getvalue()


def _upload_checkpoint(**state):
    at = make_app(**FEW_VIEWS, **{keys.MODEL: "__checkpoint__", keys.CKPT_ARCH: "ui_tiny_arch", keys.CKPT_SIZE: 32},
                  **state).run()  # fmt: skip
    at.sidebar.file_uploader(key=keys.WIDGET + keys.CKPT_FILE).set_value(
        ("mine.pt", _checkpoint_bytes(), "application/octet-stream")
    )
    return at.run()


def test_zero_std_is_refused_on_the_page(tiny_assets):
    at = _upload_checkpoint(**{keys.CKPT_STD: "0, 0, 0"})
    assert not at.exception, at.exception
    assert any("Std must be positive" in e.value for e in at.error)
    assert not at.get("plotly_chart")  # stopped before SPADE: no map of a division by zero


def test_checkpoint_upload_is_dropped_when_a_shipped_model_replaces_it(tiny_assets):
    at = _upload_checkpoint()
    assert not at.exception and not at.error, at.exception or at.error
    assert at.session_state[keys.CKPT_FILE][0] == "mine.pt"
    at.sidebar.selectbox(key=keys.WIDGET + keys.MODEL).set_value(TINY).run()
    assert not at.exception, at.exception
    assert keys.CKPT_FILE not in at.session_state


def test_image_upload_is_replaced_then_dropped_for_an_example(tiny_assets):
    trojan, clean = (tiny_assets / "ex_trojan.png").read_bytes(), (tiny_assets / "ex_clean.png").read_bytes()
    at = make_app(**FEW_VIEWS, **{keys.SAMPLE_SOURCE: "Upload"}).run()
    uploader = lambda: at.sidebar.file_uploader(key=keys.WIDGET + keys.SAMPLE_UPLOAD)  # noqa: E731
    uploader().set_value(("first.png", trojan, "image/png")).run()
    assert at.session_state[keys.SAMPLE_UPLOAD] == ("first.png", trojan)
    uploader().set_value(("second.png", clean, "image/png")).run()
    assert at.session_state[keys.SAMPLE_UPLOAD] == ("second.png", clean)  # one file kept, the new one
    at.sidebar.radio(key=keys.WIDGET + keys.SAMPLE_SOURCE).set_value("Example").run()
    assert not at.exception, at.exception
    assert keys.SAMPLE_UPLOAD not in at.session_state


def test_profiles_are_read_once_and_reach_the_config(tmp_path, monkeypatch):
    """Two runs of the SPADE controls read the profile files once; the chosen profile's per-block sparsities
    reach `prune_config()` with the page's advanced options on top."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    config = PruneConfig(sparsity=0.5, layer_sparsity=(("net.layer1", 0.3),), skip_first=False)
    profiles.SparsityProfile("mixed", "test", config, "m").save(tmp_path)
    profiles.SparsityProfile("other", "for another model", config, "someone_else").save(tmp_path)
    reads = []
    real = profiles.load_profile
    monkeypatch.setattr(profiles, "load_profile", lambda path: reads.append(path) or real(path))

    def page():
        import streamlit as st

        from pages.ui.spade_controls import spade_controls

        settings = spade_controls("t", model_name="m")
        st.session_state["config"] = settings.prune_config()

    at = AppTest.from_function(page).run()
    box = next(s for s in at.sidebar.selectbox if s.label == "Sparsity profile")
    assert box.options == ["uniform (the slider)", "mixed"]  # the other model's profile is not offered
    box.set_value("mixed").run()
    at.run()
    assert not at.exception, at.exception
    assert len(reads) == 2  # two files, read once over three runs
    got = at.session_state["config"]
    assert got.layer_sparsity == config.layer_sparsity and got.sparsity == 0.5
    assert got.skip_first  # the page's "keep the first conv dense" (default on) overrides the profile's


def test_palette_reaches_the_saliency_figure(tiny_assets):
    palette = "viridis · purple–orange"
    at = make_app(**FEW_VIEWS, **{keys.DEBUGGER_PALETTE: palette, keys.DEBUGGER_REDUCTION: "absolute"}).run()
    assert not at.exception, at.exception
    spec = next(c for c in at.get("plotly_chart") if c.key.startswith("debugger.sal.")).proto.spec.replace(" ", "")
    viridis, inferno = colours.plotly_colorscale(False, "viridis"), colours.plotly_colorscale(False, "inferno")
    assert viridis[-1][1].replace(" ", "") in spec and inferno[-1][1].replace(" ", "") not in spec
