"""A participant answers three trials in a real browser: `streamlit run app.py` on a loopback port with a temp
study database, the participant link opened in headless Chromium, the answers read back from the database.

Skipped when /usr/bin/chromium is missing, unless the environment sets CI (then it fails)."""

from __future__ import annotations

import pytest

from spade_engine.study import StudyStore
from tests.e2e.server import browser_page, require_browser, streamlit_app
from tests.study.factory import open_study

pytestmark = pytest.mark.slow  # a Streamlit server and a browser


@pytest.fixture
def server(tmp_path):
    """A study database with an open study, and the app serving it on 127.0.0.1."""
    require_browser()
    db = tmp_path / "study.db"
    store = StudyStore(str(db))
    study_id = open_study(store, n_items=6, trials=4)
    token = store.add_participant(study_id, "alice").token
    store.dispose()
    env = {"SPADE_STUDY_DB": str(db), "SPADE_DEVICE": "cpu", "SPADE_OFFLINE": "1"}
    with streamlit_app(env, tmp_path / "streamlit.log") as url:
        yield url, db, study_id, token


def _settled(page) -> None:  # noqa: ANN001
    """Wait until the script run has finished and no element is stale."""
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached")
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")


def test_participant_answers_three_trials_in_the_browser(server):
    from playwright.sync_api import expect

    url, db, study_id, token = server
    with browser_page(f"{url}/?participant={token}&study={study_id}", 90_000) as page:  # torch's first import: slow
        for k, button in enumerate(["◀ Patch A", "Patch B ▶", "I can't tell"]):
            expect(page.get_by_text(f"Trial {k + 1} of 4")).to_be_visible()
            _settled(page)  # a click on a stale button of the previous run would answer the previous trial
            expect(page.get_by_text("Explanation of the network's decision")).to_be_visible()
            page.get_by_role("button", name=button).click()
        expect(page.get_by_text("Trial 4 of 4")).to_be_visible()
        assert page.get_by_text("Debugger").count() == 0  # no navigation to researcher pages

    store = StudyStore(str(db))
    answers = store.answers(study_id)
    store.dispose()
    assert [(a.participant, a.trial_index, a.choice) for a in answers] == [
        ("alice", 0, "left"),
        ("alice", 1, "right"),
        ("alice", 2, "undecided"),
    ]
    assert all(a.response_ms is not None and a.response_ms >= 0 for a in answers)
