"""app.py: page discovery, titles, the study-participant hook and the sidebar device label."""

from __future__ import annotations

import importlib.util

from pages.ui import keys
from tests.app.conftest import APP, make_app


def _app_module():
    spec = importlib.util.spec_from_file_location("spade_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # `main()` runs only as __main__
    return module


def test_titles_from_file_names():
    app = _app_module()
    assert app.page_title(APP.parent / "pages/3_Neuron_explorer.py") == "Neuron explorer"
    assert app.page_title(APP.parent / "pages/1_Debugger.py") == "Debugger"
    assert app.page_title(APP.parent / "pages/12_Sobol_regions.py") == "Sobol regions"


def test_discovery_orders_by_number_and_ignores_helpers(tmp_path):
    app = _app_module()
    for name in ["10_Tour.py", "2_B.py", "1_Debugger.py", "ui.py", "_draft.py", "x_Page.py", "3_notes.txt"]:
        (tmp_path / name).write_text("")
    (tmp_path / "ui").mkdir()
    assert [p.name for p in app.discover_pages(tmp_path)] == ["1_Debugger.py", "2_B.py", "10_Tour.py"]


def test_participant_page_only_when_present(tmp_path):
    app = _app_module()
    (tmp_path / "1_Debugger.py").write_text("")
    assert app.participant_page(app.discover_pages(tmp_path)) is None
    (tmp_path / "9_Study_participant.py").write_text("")
    assert app.participant_page(app.discover_pages(tmp_path)).name == "9_Study_participant.py"


def test_debugger_is_the_default_page_and_device_is_shown(tiny_assets):
    at = make_app(**{keys.scoped(keys.DEBUGGER, keys.N_AUG): 8}).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "SPADE Debugger"
    assert any(c.value == "Device: **CPU**" for c in at.sidebar.caption)


def test_participant_link_shows_only_the_study_page(tiny_assets):
    app = _app_module()
    study = app.participant_page(app.discover_pages())
    at = make_app(**{keys.scoped(keys.DEBUGGER, keys.N_AUG): 8})
    at.query_params["participant"] = "p01"
    at.run()
    assert not at.exception, at.exception
    titles = [t.value for t in at.title]
    if study is None:  # no study page shipped: the normal app
        assert titles == ["SPADE Debugger"]
    else:  # only the study page: no debugger, no model picker, no device line
        assert "SPADE Debugger" not in titles and not at.sidebar.selectbox and not at.sidebar.caption


def test_device_label_names_the_gpu(monkeypatch):
    import torch

    app = _app_module()
    monkeypatch.setenv("SPADE_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    assert app.device_label() == "GPU · NVIDIA H100"
    monkeypatch.setenv("SPADE_DEVICE", "cpu")
    assert app.device_label() == "CPU"
