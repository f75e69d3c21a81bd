"""The three study pages in AppTest: a participant's blinded trials with resume, the results, the designer, and
their access rules (researcher password, participant tokens)."""

import logging
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pages.ui import access, keys
from spade_engine.study import CONDITIONS, StudyStore
from tests.study.factory import open_study

PAGES = Path(__file__).resolve().parents[2] / "pages"
SHIPPED = "testbed_v2_resnet"  # models.DEMO_TESTBED: the first model the designer offers
PASSWORD = "correct horse battery staple"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SPADE_STUDY_DB", str(tmp_path / "study.db"))
    monkeypatch.setenv("SPADE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPADE_DEVICE", "cpu")
    monkeypatch.setenv("SPADE_STUDY_PASSWORD", PASSWORD)
    st.cache_data.clear()
    st.cache_resource.clear()
    s = StudyStore()
    yield s
    s.dispose()


def page(name: str, researcher: bool = True, **params) -> AppTest:
    """Run a page; `researcher`: as a browser session that has given the researcher password."""
    at = AppTest.from_file(str(PAGES / name), default_timeout=600)  # a busy 2-core machine: minutes, not seconds
    if researcher:
        at.session_state[keys.STUDY_ACCESS_RESEARCHER] = True
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "success", "title") for e in getattr(at, kind)]
    return " ".join(str(p) for p in parts) + " " + " ".join(b.label for b in at.button)


def test_participant_sees_blinded_trials_and_resumes(store):
    study_id = open_study(store, trials=4)
    ann = store.add_participant(study_id, "ann").token
    at = page("9_Study_participant.py", researcher=False, participant=ann, study=study_id)
    assert not at.exception
    assert "Trial 1 of 4" in at.get("progress")[0].proto.text
    shown = texts(at).lower()
    assert (
        all(c.title.lower() not in shown for c in CONDITIONS.values()) and "spade" not in shown and "dense" not in shown
    )
    at.button(key=f"{keys.PARTICIPANT_CHOICE}.left.0").click().run()
    at.button(key=f"{keys.PARTICIPANT_CHOICE}.right.1").click().run()
    assert [(a.trial_index, a.choice) for a in store.answers(study_id)] == [(0, "left"), (1, "right")]

    again = page("9_Study_participant.py", researcher=False, participant=ann, study=study_id)  # a new session
    assert "Trial 3 of 4" in again.get("progress")[0].proto.text
    again.button[-1].click().run()  # take a break
    assert "Paused" in again.info[0].value and "trial 3" in again.info[0].value
    assert len(store.answers(study_id)) == 2


def test_participant_finishes_and_bad_links_get_a_message(store, caplog):
    study_id = open_study(store, trials=2, allow_undecided=False)
    bo = store.add_participant(study_id, "bo").token
    at = page("9_Study_participant.py", researcher=False, participant=bo, study=study_id)
    assert "I can't tell" not in texts(at)
    at.button(key=f"{keys.PARTICIPANT_CHOICE}.left.0").click().run()
    at.button(key=f"{keys.PARTICIPANT_CHOICE}.left.1").click().run()
    assert "Thank you" in at.success[0].value
    caplog.set_level(logging.WARNING, logger="spade_engine.study.access")
    assert "incomplete" in page("9_Study_participant.py", participant=bo).info[0].value
    assert "no study" in page("9_Study_participant.py", participant=bo, study="nope").info[0].value
    for forged in ("bo", "cy", bo[:-2] + "xx"):  # a code, a made-up id, a mistyped token: no self-registration
        at = page("9_Study_participant.py", researcher=False, participant=forged, study=study_id)
        assert not at.exception and "link is not valid" in at.info[0].value and not at.button
    assert store.participants(study_id) == ["bo"] and len(store.answers(study_id)) == 2
    store.set_status(study_id, "closed")
    assert "not open" in page("9_Study_participant.py", participant=bo, study=study_id).info[0].value
    assert sum(r.name == "spade_engine.study.access" for r in caplog.records) == 1 + 3 + 1


def test_an_answer_refused_after_the_page_was_shown_says_why(store):
    study_id = open_study(store, trials=3)
    token = store.add_participant(study_id, "dee").token
    at = page("9_Study_participant.py", researcher=False, participant=token, study=study_id)
    store.set_status(study_id, "closed")  # the researcher closes the study while the trial is on screen
    at.button(key=f"{keys.PARTICIPANT_CHOICE}.left.0").click().run()
    assert not at.exception and store.answers(study_id) == []
    assert "not open" in at.info[0].value


@pytest.mark.parametrize("name", ["8_Study_designer.py", "10_Study_results.py"])
def test_researcher_pages_need_the_password(store, monkeypatch, caplog, name):
    study_id = open_study(store, trials=2)
    store.add_participant(study_id, "ann")
    at = page(name, researcher=False)
    assert not at.exception and "researcher password" in at.info[0].value
    assert not at.code and not at.dataframe and not at.get("download_button")  # no links, no answers
    caplog.set_level(logging.WARNING, logger="spade_engine.study.access")
    at.text_input(key=keys.STUDY_ACCESS_PASSWORD).set_value("guess")
    at.button[0].click().run()
    assert "not right" in at.error[0].value and not at.code and not at.get("download_button")
    refused = [r.message for r in caplog.records if r.name == "spade_engine.study.access"]
    assert refused == [
        f"refused researcher access to the {name[:-3].split('_', 1)[1].replace('_', ' ')} page: wrong password"
    ]
    assert all("guess" not in r.getMessage() for r in caplog.records)
    at.text_input(key=keys.STUDY_ACCESS_PASSWORD).set_value(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and not at.error and at.title[0].value.startswith("Study")
    assert study_id in " ".join(str(s.value) for s in at.selectbox)  # the study picker is shown

    monkeypatch.delenv("SPADE_STUDY_PASSWORD")  # no password configured: locked, and says how to configure one
    at = page(name, researcher=False)
    assert "SPADE_STUDY_PASSWORD" in at.info[0].value and not at.text_input


def test_password_comparison_is_exact():
    assert access.password_matches("pässwort", "pässwort")
    assert not access.password_matches("pässwort", "passwort") and not access.password_matches("", "x")
    assert not access.password_matches("abc", "abcd") and not access.password_matches("abcd", "abc")


def test_results_page_shows_conditions_test_and_download(store):
    study_id = open_study(store, trials=4)
    assert "no answers" in page("10_Study_results.py").info[0].value
    for code in ("ann", "bo", "cy"):
        token = store.add_participant(study_id, code).token
        for t in store.trials(study_id, code):
            store.record_answer(
                study_id, token, t.index, t.reference_side if t.condition == "spade_vis" else "undecided", 800
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
    tokens = store.tokens(study_id)
    assert len(links) == 5 and all(f"&study={study_id}" in link for link in links)
    assert sorted(link.split("?participant=")[1].split("&")[0] for link in links) == sorted(tokens.values())
    [b for b in at.button if b.label == "Close the study"][0].click().run()
    assert store.get_study(study_id).status == "closed"


def test_designer_creates_precomputes_and_opens_a_study_on_the_shipped_model(store):
    at = page("8_Study_designer.py")
    at.text_input[0].set_value("Shipped model study")
    at.number_input[0].set_value(2)  # items
    at.number_input[1].set_value(4)  # trials per participant
    at.select_slider[0].set_value(16)  # augmented views
    at.multiselect[0].set_value(["none", "spade_saliency"])  # cheap conditions (visualisations: test_study_stimuli)
    at.selectbox(key=keys.DESIGNER_METHOD).set_value("Saliency")
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
    view = page("9_Study_participant.py", participant=store.add_participant(info.id).token, study=info.id)
    assert not view.exception and "Trial 1 of 4" in view.get("progress")[0].proto.text
    assert "The network classified this image as" in texts(view)
