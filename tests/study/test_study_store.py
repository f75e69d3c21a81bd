"""The study store: creation, stimuli, participants, answers that survive restarts and concurrent writers."""

import logging
import sqlite3
import threading

import pytest
from PIL import Image
from sqlalchemy import text

from spade_engine.study import InvalidTokenError, StudyError, StudyNotOpenError, StudyStore, UnknownStudyError
from spade_engine.study.render import from_png, to_png, trial_view
from spade_engine.study.store import Stimulus, redact_url, resolve_url
from tests.study.factory import design, fill_stimuli, open_study


@pytest.fixture
def store(tmp_path):
    s = StudyStore(str(tmp_path / "study.db"))
    yield s
    s.dispose()


def test_create_study_stores_the_design_as_a_draft(store):
    d = design(n_items=5, trials=4)
    study_id = store.create_study(d)
    info = store.get_study(study_id)
    assert info.design == d and info.status == "draft" and info.name == d.name
    assert [s.id for s in store.list_studies()] == [study_id]
    assert len(store.missing_stimuli(study_id)) == 5 * 2


def test_invalid_designs_and_duplicate_ids_are_refused(store):
    with pytest.raises(StudyError, match="fit"):
        store.create_study(design(conditions=("dense_saliency",)).with_(question="neuron"))
    with pytest.raises(StudyError, match="item"):
        store.create_study(design().with_(items=()))
    store.create_study(design(), study_id="s1")
    with pytest.raises(StudyError, match="exists"):
        store.create_study(design(), study_id="s1")


def test_a_study_opens_only_with_all_stimuli(store):
    study_id = store.create_study(design(n_items=3))
    with pytest.raises(StudyError, match="stimuli"):
        store.set_status(study_id, "open")
    fill_stimuli(store, study_id)
    assert store.missing_stimuli(study_id) == []
    store.set_status(study_id, "open")
    assert store.get_study(study_id).status == "open"


def test_stimulus_round_trip_and_replacement(store):
    study_id = store.create_study(design(n_items=2))
    png = to_png(Image.new("RGB", (8, 8), (1, 2, 3)))
    store.put_stimulus(study_id, Stimulus(1, "spade_vis", png, png, png, 1, None, {"boxes": [[0, 0, 1, 1]] * 2}))
    store.put_stimulus(study_id, Stimulus(1, "spade_vis", png, png, png, 0, png, {"k": 2}))
    got = store.get_stimulus(study_id, 1, "spade_vis")
    assert (got.reference, got.explanation_png, got.meta) == (0, png, {"k": 2})
    assert store.get_study(study_id).n_stimuli == 1


def test_answers_survive_a_restart_and_the_participant_resumes(tmp_path):
    url = str(tmp_path / "study.db")
    store = StudyStore(url)
    study_id = open_study(store, trials=6)
    alice = store.add_participant(study_id, "alice")
    for k in range(3):
        store.record_answer(study_id, alice.token, k, "left", response_ms=900 + k)
    store.dispose()

    again = StudyStore(url)  # a new engine, new connections
    answers = again.answers(study_id)
    assert [(a.participant, a.trial_index, a.choice, a.response_ms) for a in answers] == [
        ("alice", k, "left", 900 + k) for k in range(3)
    ]
    assert again.next_trial(study_id, "alice") == 3
    assert again.participant_for_token(study_id, alice.token) == "alice"  # the same link after a restart
    assert again.participants(study_id) == ["alice"]
    again.dispose()


def test_resume_is_the_first_unanswered_trial_even_with_gaps(store):
    study_id = open_study(store, trials=5)
    token = store.add_participant(study_id, "bob").token
    for k in (0, 1, 3):
        store.record_answer(study_id, token, k, "right")
    assert store.next_trial(study_id, "bob") == 2
    store.record_answer(study_id, token, 2, "right")
    store.record_answer(study_id, token, 4, "right")
    assert store.next_trial(study_id, "bob") is None


def test_a_resubmitted_answer_is_not_duplicated(store):
    study_id = open_study(store, trials=4)
    token = store.add_participant(study_id, "p1").token
    first = store.record_answer(study_id, token, 0, "left", 500)
    second = store.record_answer(study_id, token, 0, "right", 700)
    assert not first.duplicate and second.duplicate
    assert (second.choice, second.response_ms) == ("left", 500)  # the first answer is kept
    assert len(store.answers(study_id)) == 1


def test_answers_are_scored_against_the_trial_reference_side(store):
    study_id = open_study(store, trials=4)
    token = store.add_participant(study_id, "p1").token
    trials = store.trials(study_id, "p1")
    for t in trials:
        store.record_answer(study_id, token, t.index, t.reference_side if t.index % 2 == 0 else "undecided")
    answers = store.answers(study_id)
    assert [a.correct for a in answers] == [True, False, True, False]
    assert [(a.item_index, a.condition, a.reference_side) for a in answers] == [
        (t.item_index, t.condition, t.reference_side) for t in trials
    ]


def test_closed_studies_bad_tokens_and_bad_choices_are_refused_and_logged(store, caplog):
    study_id = open_study(store, trials=3, allow_undecided=False)
    other = open_study(store, trials=3)
    p1 = store.add_participant(study_id, "p1")
    stranger = store.add_participant(other, "p1")  # the same code in another study has another token
    caplog.set_level(logging.WARNING, logger="spade_engine.study.access")
    for forged in ("p1", "", stranger.token, p1.token[:-1] + ("A" if p1.token[-1] != "A" else "B"), "x" * 300):
        with pytest.raises(InvalidTokenError, match="link is not valid"):
            store.record_answer(study_id, forged, 0, "left")
    with pytest.raises(UnknownStudyError, match="no study"):
        store.participant_for_token("nope", p1.token)
    with pytest.raises(UnknownStudyError, match="no such study") as e:
        store.participant_for_token("[click me](http://evil.example)", p1.token)
    assert "evil" not in str(e.value)
    with pytest.raises(StudyError, match="choice"):
        store.record_answer(study_id, p1.token, 0, "undecided")
    with pytest.raises(StudyError, match="Trial 3"):
        store.record_answer(study_id, p1.token, 3, "left")
    store.set_status(study_id, "closed")
    with pytest.raises(StudyNotOpenError):
        store.record_answer(study_id, p1.token, 0, "left")
    assert store.answers(study_id) == []
    refusals = [r for r in caplog.records if r.message.startswith("refused")]
    assert len(refusals) == 5 + 2 + 2 + 1
    assert all(p1.token not in r.getMessage() for r in caplog.records)  # tokens never reach the log


def test_tokens_are_unguessable_per_participant_and_listed_for_the_designer(store):
    study_id = open_study(store, trials=2)
    issued = [store.add_participant(study_id) for _ in range(50)]
    tokens = [p.token for p in issued]
    assert len(set(tokens)) == 50 and all(len(t) >= 22 for t in tokens)  # 128 random bits, URL-safe
    assert all(p.token != p.code and p.code not in p.token for p in issued)
    assert store.tokens(study_id) == {p.code: p.token for p in issued}
    assert [store.participant_for_token(study_id, p.token) for p in issued[:5]] == [p.code for p in issued[:5]]


def test_a_database_from_before_tokens_gets_a_token_column_and_tokens(tmp_path):
    path = tmp_path / "old.db"
    store = StudyStore(str(path))
    study_id = open_study(store, trials=2)
    store.add_participant(study_id, "old")
    store.dispose()
    con = sqlite3.connect(path)  # rebuild the participants table as it was before tokens
    con.executescript(
        "CREATE TABLE p2 (id INTEGER NOT NULL PRIMARY KEY, study_id VARCHAR(64) NOT NULL REFERENCES studies (id) "
        "ON DELETE CASCADE, code VARCHAR(64) NOT NULL, created_at DATETIME NOT NULL, finished_at DATETIME, "
        "CONSTRAINT uq_participant_code UNIQUE (study_id, code));"
        "INSERT INTO p2 SELECT id, study_id, code, created_at, finished_at FROM participants;"
        "DROP TABLE participants; ALTER TABLE p2 RENAME TO participants;"
    )
    con.commit()
    con.close()
    again = StudyStore(str(path))
    token = again.tokens(study_id)["old"]
    assert token and again.participant_for_token(study_id, token) == "old"
    again.record_answer(study_id, token, 0, "left")
    assert [a.participant for a in again.answers(study_id)] == ["old"]
    again.dispose()


def test_database_urls_are_shown_without_their_password():
    url = "postgresql+psycopg://lab:s3cret-pw@db.example.org:5432/study"
    assert "s3cret-pw" not in redact_url(url) and "lab:***@db.example.org" in redact_url(url)
    assert "s3cret-pw" not in redact_url("mysql://u:s3cret-pw@host/db")
    assert redact_url("sqlite:////tmp/study.db") == "sqlite:////tmp/study.db"


@pytest.mark.parametrize("shared", [False, True], ids=["store-per-thread", "shared-store"])
def test_concurrent_participants_do_not_interfere(tmp_path, shared):
    url = str(tmp_path / "study.db")
    setup = StudyStore(url)
    study_id = open_study(setup, n_items=12, trials=12)
    n_threads, errors = 6, []
    barrier = threading.Barrier(n_threads)

    def participant(k: int) -> None:
        # separate engines (separate server processes) or one shared store (Streamlit sessions share the cached one)
        store = setup if shared else StudyStore(url)
        try:
            code = f"p{k}"
            token = store.add_participant(study_id, code).token
            barrier.wait()
            for t in store.trials(study_id, code):
                store.record_answer(
                    study_id, token, t.index, "left" if (t.index + k) % 2 else "right", 100 * k + t.index
                )
                store.record_answer(study_id, token, t.index, "left")  # double click: must not duplicate
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            if not shared:
                store.dispose()

    threads = [threading.Thread(target=participant, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    setup.dispose()
    assert errors == []
    check = StudyStore(url)
    answers = check.answers(study_id)
    assert len(answers) == n_threads * 12
    for k in range(n_threads):
        mine = [a for a in answers if a.participant == f"p{k}"]
        assert [a.trial_index for a in mine] == list(range(12))
        assert [a.response_ms for a in mine] == [100 * k + i for i in range(12)]
        assert [a.choice for a in mine] == ["left" if (i + k) % 2 else "right" for i in range(12)]
    check.dispose()


def test_sqlite_runs_in_wal_mode_and_the_env_var_picks_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SPADE_STUDY_DB", str(tmp_path / "sub" / "env.db"))
    assert resolve_url() == f"sqlite:///{tmp_path / 'sub' / 'env.db'}"
    assert resolve_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    store = StudyStore()
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert (tmp_path / "sub" / "env.db").exists()
    store.dispose()


def test_trial_view_puts_the_reference_on_the_trial_side(store):
    study_id = store.create_study(design(n_items=1, trials=2))
    red, blue = to_png(Image.new("RGB", (32, 32), (255, 0, 0))), to_png(Image.new("RGB", (32, 32), (0, 0, 255)))
    meta = {"boxes": [[0, 0, 8, 8], [24, 24, 32, 32]]}
    stim = Stimulus(0, "dense_vis", red, red, blue, 1, red, meta)  # reference: option b (blue)
    store.put_stimulus(study_id, stim)
    stim = store.get_stimulus(study_id, 0, "dense_vis")
    for t in store.trials(study_id, "p1"):
        view = trial_view(stim, t, "patch")
        ref_img = view.left if t.reference_side == "left" else view.right
        assert ref_img.getpixel((16, 16)) == (0, 0, 255)
        box_b_colour = (255, 127, 14) if t.reference_side == "left" else (31, 119, 180)
        assert view.image.getpixel((24, 28)) == box_b_colour  # the reference box has its side's colour
    assert from_png(red).size == (32, 32)
