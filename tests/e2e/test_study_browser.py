"""A participant answers three trials in a real browser: `streamlit run app.py` on a loopback port with a temp
study database, the participant link opened in headless Chromium, the answers read back from the database.

Skipped when /usr/bin/chromium is missing, unless the environment sets CI (then it fails)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from spade_engine.study import StudyStore
from tests.study.factory import open_study

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]  # fmt: skip

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing (CI is set): install it with `apt-get install -y chromium`.")
    pytest.skip(
        f"{CHROMIUM} is missing: `apt-get install -y chromium` to run the browser test.", allow_module_level=True
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A study database with an open study, and the app serving it on 127.0.0.1."""
    db = tmp_path / "study.db"
    store = StudyStore(str(db))
    study_id = open_study(store, n_items=6, trials=4)
    store.dispose()
    port = free_port()
    env = {**os.environ, "SPADE_STUDY_DB": str(db), "SPADE_DEVICE": "cpu", "SPADE_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
           "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]  # fmt: skip
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(port, proc, tmp_path / "streamlit.log")
        yield f"http://127.0.0.1:{port}", db, study_id
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"streamlit did not start in {timeout} s:\n{log.read_text()[-3000:]}")


def _settled(page) -> None:  # noqa: ANN001
    """Wait until the script run has finished and no element is stale."""
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached")
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")


def test_participant_answers_three_trials_in_the_browser(server):
    from playwright.sync_api import expect, sync_playwright

    url, db, study_id = server
    expect.set_options(timeout=90_000)  # the first run imports torch on 2 shared cores
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/?participant=alice&study={study_id}")
            for k, button in enumerate(["◀ Patch A", "Patch B ▶", "I can't tell"]):
                expect(page.get_by_text(f"Trial {k + 1} of 4")).to_be_visible()
                _settled(page)  # a click on a stale button of the previous run would answer the previous trial
                expect(page.get_by_text("Explanation of the network's decision")).to_be_visible()
                page.get_by_role("button", name=button).click()
            expect(page.get_by_text("Trial 4 of 4")).to_be_visible()
            assert page.get_by_text("Debugger").count() == 0  # no navigation to researcher pages
        finally:
            browser.close()

    store = StudyStore(str(db))
    answers = store.answers(study_id)
    store.dispose()
    assert [(a.participant, a.trial_index, a.choice) for a in answers] == [
        ("alice", 0, "left"),
        ("alice", 1, "right"),
        ("alice", 2, "undecided"),
    ]
    assert all(a.response_ms is not None and a.response_ms >= 0 for a in answers)
