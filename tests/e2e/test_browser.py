"""End to end in a real browser: `streamlit run app.py` + headless Chromium (Playwright, sync API).

Uploads a shipped example through the file chooser, moves the sparsity slider with the keyboard, waits for the
dense and SPADE saliency panels and saves a screenshot to artifacts/. Skips when /usr/bin/chromium is missing,
except under CI (env CI set), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]  # fmt: skip
EXAMPLES = ROOT / "assets" / "examples"
TIMEOUT_MS = 300_000  # a cold SPADE run on 2 shared CPU cores
# the slider starts at the default model's card default (testbed_resnet: 80 %) and the test moves it 10 points down
START = round(100 * json.loads((ROOT / "assets" / "models" / "testbed_resnet.json").read_text())["spade"]["sparsity"])
MOVED = START - 10


def _require_browser() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")


def _example() -> Path:
    """A shipped example, preferring one with a trojan patch (the panels then show the outline and AUCs)."""
    index = EXAMPLES / "index.json"
    if not index.exists():
        pytest.skip("assets/examples/index.json not shipped yet")
    raw = json.loads(index.read_text())
    raw = raw.get("examples", raw) if isinstance(raw, dict) else raw
    entries = list(raw.items()) if isinstance(raw, dict) else [(e.get("file") or e.get("path"), e) for e in raw]
    files = [(Path(f).name, m) for f, m in entries if (EXAMPLES / Path(f).name).exists()]
    if not files:
        pytest.skip("no example images shipped yet")
    trojan = [f for f, m in files if m.get("trojan")]
    return EXAMPLES / (trojan or [files[0][0]])[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def example() -> Path:
    _require_browser()
    return _example()


@pytest.fixture
def server(example):
    """`streamlit run app.py` on a free loopback port; yields its URL; always killed afterwards."""
    port = _free_port()
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    cmd = [streamlit, "run", "app.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    env = {**os.environ, "SPADE_OFFLINE": "1"}
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "streamlit_e2e.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}; see artifacts/streamlit_e2e.log")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


def _wait_idle(page) -> None:
    """Until the script run is over (no 'Running…' status widget) and the plotly charts have drawn."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3",
        timeout=TIMEOUT_MS,
    )  # fmt: skip
    page.wait_for_timeout(1500)


def test_upload_slide_and_see_both_panels(server, example):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 2400})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server)
            expect(page.get_by_role("heading", name="SPADE Debugger")).to_be_visible()
            sidebar = page.get_by_test_id("stSidebar")

            # upload the example through the browser's file chooser
            sidebar.get_by_test_id("stRadio").get_by_text("Upload", exact=True).click()
            with page.expect_file_chooser() as chooser:
                sidebar.get_by_test_id("stFileUploaderDropzone").get_by_role(
                    "button", name="Upload", exact=True
                ).click()
            chooser.value.set_files(str(example))
            expect(sidebar.get_by_text(f"{example.name} as the model sees it", exact=False)).to_be_visible()
            _wait_idle(page)

            # move the sparsity slider with the keyboard: the model card's default -> 10 points lower
            thumb = sidebar.get_by_test_id("stSlider").first.get_by_role("slider")
            expect(thumb).to_have_value(str(START))
            thumb.focus()
            for _ in range(10):
                thumb.press("ArrowLeft")
            expect(thumb).to_have_value(str(MOVED))
            expect(page.get_by_text(f"SPADE {MOVED}%", exact=False).first).to_be_visible()
            _wait_idle(page)

            main = page.get_by_test_id("stMain")
            expect(main.get_by_role("heading", name="Predictions")).to_be_visible()
            expect(main.get_by_text("Reused cached trace", exact=False).first).to_be_visible()
            panels = main.locator(".js-plotly-plot")
            titles = panels.locator("text.gtitle, g.annotation-text-g text")
            expect(titles.filter(has_text="Dense").first).to_be_visible()
            expect(titles.filter(has_text=f"SPADE {MOVED}%").first).to_be_visible()
            assert (
                titles.filter(has_text="Dense").count() >= 1 and titles.filter(has_text=f"SPADE {MOVED}%").count() >= 1
            )
            expect(main.get_by_text("Dense predicts")).to_be_visible()
            expect(main.get_by_role("button", name="Panel (PNG)")).to_be_enabled()
            page.screenshot(path=str(ARTIFACTS / "debugger.png"))

            # a file that is not an image: a visible error, no traceback
            bad = ARTIFACTS / "not_an_image.png"
            bad.write_bytes(b"definitely not a PNG")
            with page.expect_file_chooser() as chooser:
                sidebar.get_by_role("button", name="Add files").click()  # replaces the single file
            chooser.value.set_files(str(bad))
            expect(main.get_by_text("Cannot use this image", exact=False)).to_be_visible()
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
            expect(main.get_by_role("heading", name="Predictions")).to_have_count(0)  # the page stopped
            assert page.get_by_test_id("stException").count() == 0
            page.screenshot(path=str(ARTIFACTS / "debugger_bad_upload.png"))
        finally:
            browser.close()
