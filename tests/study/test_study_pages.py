"""The three study pages in AppTest: a participant's blinded trials with resume, the results, the designer."""

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from spade_engine.study import CONDITIONS, StudyStore
from tests.study.factory import open_study

PAGES = Path(__file__).resolve().parents[2] / "pages"
SHIPPED = "testbed_resnet"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SPADE_STUDY_DB", str(tmp_path / "study.db"))
    monkeypatch.setenv("SPADE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPADE_DEVICE", "cpu")
    st.cache_data.clear()
    st.cache_resource.clear()
    s = StudyStore()
    yield s
    s.dispose()


def page(name: str, **params) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "title") for e in getattr(at, kind)]
    return " ".join(str(p) for p in parts) + " " + " ".join(b.label for b in at.button)


def test_participant_sees_blinded_trials_and_resumes(store):
    study_id = open_study(store, trials=4)
    at = page("9_Study_participant.py", participant="ann", study=study_id)
    assert not at.exception
    assert "Trial 1 of 4" in at.get("progress")[0].proto.text
    shown = texts(at).lower()
    assert (
        all(c.title.lower() not in shown for c in CONDITIONS.values()) and "spade" not in shown and "dense" not in shown
    )
    at.button(key="choose.left.0").click().run()
    at.button(key="choose.right.1").click().run()
    assert [(a.trial_index, a.choice) for a in store.answers(study_id)] == [(0, "left"), (1, "right")]

    again = page("9_Study_participant.py", participant="ann", study=study_id)  # a new browser session
    assert "Trial 3 of 4" in again.get("progress")[0].proto.text
    again.button[-1].click().run()  # take a break
    assert "Paused" in again.info[0].value and "trial 3" in again.info[0].value
    assert len(store.answers(study_id)) == 2


def test_participant_finishes_and_bad_links_get_a_message(store):
    study_id = open_study(store, trials=2, allow_undecided=False)
    at = page("9_Study_participant.py", participant="bo", study=study_id)
    assert "I can't tell" not in texts(at)
    at.button(key="choose.left.0").click().run()
    at.button(key="choose.left.1").click().run()
    assert "Thank you" in at.success[0].value
    assert "incomplete" in page("9_Study_participant.py", participant="bo").info[0].value
    assert "no study" in page("9_Study_participant.py", participant="bo", study="nope").info[0].value
    store.set_status(study_id, "closed")
    assert "not open" in page("9_Study_participant.py", participant="cy", study=study_id).info[0].value


def test_results_page_shows_conditions_test_and_download(store):
    study_id = open_study(store, trials=4)
    assert "no answers" in page("10_Study_results.py").info[0].value
    for code in ("ann", "bo", "cy"):
        store.ensure_participant(study_id, code)
        for t in store.trials(study_id, code):
            store.record_answer(
                study_id, code, t.index, t.reference_side if t.condition == "spade_vis" else "undecided", 800
            )
    at = page("10_Study_results.py")
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2
    comparison = next(m.value for m in at.markdown if "Fisher" in m.value)
    assert "6/6 vs 0/6" in comparison and "+100.0%" in comparison and "— significant" in comparison
    assert len(at.get("download_button")) == 1
    assert at.dataframe[-1].value["answers"].tolist() == [4, 4, 4]


def test_designer_hands_out_participant_links_and_closes_the_study(store):
    at = page("8_Study_designer.py")
    assert not at.exception
    study_id = open_study(store, trials=4)
    at = page("8_Study_designer.py")
    [b for b in at.button if b.label == "Create participant ids"][0].click().run()
    links = at.code[0].value.splitlines()
    assert len(links) == 5 and all(f"&study={study_id}" in link and "?participant=p" in link for link in links)
    [b for b in at.button if b.label == "Close the study"][0].click().run()
    assert store.get_study(study_id).status == "closed"


def test_designer_creates_precomputes_and_opens_a_study_on_the_shipped_model(store):
    at = page("8_Study_designer.py")
    at.text_input[0].set_value("Shipped model study")
    at.number_input[0].set_value(2)  # items
    at.number_input[1].set_value(4)  # trials per participant
    at.select_slider[0].set_value(16)  # augmented views
    at.multiselect[0].set_value(["none", "spade_saliency"])  # cheap conditions (visualisations: test_study_stimuli)
    at.selectbox(key="study_designer.method").set_value("Saliency")
    [b for b in at.button if b.label == "Create study"][0].click().run()
    assert not at.exception
    (info,) = store.list_studies()
    d = info.design
    assert (d.name, d.model, d.question, len(d.items), d.trials_per_participant) == (
        "Shipped model study",
        SHIPPED,
        "patch",
        2,
        4,
    )
    assert d.conditions == ("none", "spade_saliency") and d.n_aug == 16 and d.saliency_method == "Saliency"
    [b for b in at.button if b.label.startswith("Pre-compute")][0].click().run()
    assert not at.exception and store.missing_stimuli(info.id) == []
    assert any("kept the dense decision on" in c.value and "/2 items" in c.value for c in at.caption)
    [b for b in at.button if b.label == "Open the study"][0].click().run()
    assert store.get_study(info.id).status == "open"
    view = page("9_Study_participant.py", participant="x", study=info.id)
    assert not view.exception and "Trial 1 of 4" in view.get("progress")[0].proto.text
    assert "The network classified this image as" in texts(view)
