"""End to end in a real browser: `streamlit run app.py` + headless Chromium (Playwright, sync API).

Uploads a shipped example through the file chooser, moves the sparsity slider with the keyboard, waits for the
dense and SPADE saliency panels and saves a screenshot to artifacts/. Skips when /usr/bin/chromium is missing,
except under CI (env CI set), where it fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spade_engine import models
from tests.e2e.server import ROOT, browser_page, require_browser, streamlit_app

ARTIFACTS = ROOT / "artifacts"
EXAMPLES = ROOT / "assets" / "examples"
TIMEOUT_MS = 300_000  # a cold SPADE run on 2 shared CPU cores
pytestmark = pytest.mark.slow  # a Streamlit server and a browser
# the slider starts at the card default of the model the app opens on, and the test moves it 10 points down
START = round(100 * models.spade_defaults(models.DEFAULT_MODEL)["sparsity"])
MOVED = START - 10


def _example() -> Path:
    """The first shipped trojaned example (the panels then show the patch outline and AUCs)."""
    entries = json.loads((EXAMPLES / "index.json").read_text())["examples"]
    return EXAMPLES / next(e["file"] for e in entries if e["trojan"])


@pytest.fixture
def example() -> Path:
    require_browser()
    return _example()


@pytest.fixture
def server(example):
    """`streamlit run app.py` on a free loopback port; yields its URL; always stopped afterwards."""
    with streamlit_app({"SPADE_OFFLINE": "1"}, ARTIFACTS / "streamlit_e2e.log") as url:
        yield url


def _wait_idle(page) -> None:
    """Until the script run is over (no 'Running…' status widget) and the plotly charts have drawn."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3",
        timeout=TIMEOUT_MS,
    )  # fmt: skip
    page.wait_for_timeout(1500)


def test_upload_slide_and_see_both_panels(server, example):
    from playwright.sync_api import expect

    with browser_page(server, TIMEOUT_MS, {"width": 1440, "height": 2400}) as page:
        expect(page.get_by_role("heading", name="SPADE Debugger")).to_be_visible()
        sidebar = page.get_by_test_id("stSidebar")

        # upload the example through the browser's file chooser
        sidebar.get_by_test_id("stRadio").get_by_text("Upload", exact=True).click()
        with page.expect_file_chooser() as chooser:
            sidebar.get_by_test_id("stFileUploaderDropzone").get_by_role("button", name="Upload", exact=True).click()
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
        assert titles.filter(has_text="Dense").count() >= 1 and titles.filter(has_text=f"SPADE {MOVED}%").count() >= 1
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


def test_benchmarks_page_shows_the_stored_protocol_and_ablation(server):
    """The shipped protocol runs (the real network's first, as the app's default model), the v2 difficulty
    diagnostic and v1's ablation render as charts and tables in the browser, with their settings."""
    from playwright.sync_api import expect

    if not (ROOT / "assets" / "benchmarks" / "testbed_resnet_ablation.csv").exists():
        pytest.skip("no stored ablation run")
    with browser_page(server, TIMEOUT_MS, {"width": 1440, "height": 3000}) as page:
        page.get_by_test_id("stSidebarNav").get_by_text("Benchmarks", exact=True).click()
        main = page.get_by_test_id("stMain")
        expect(main.get_by_role("heading", name="Latest stored results")).to_be_visible()  # Lite0, the default
        expect(main.get_by_text("60 insertion samples", exact=False).first).to_be_visible()  # the real photos
        expect(main.get_by_role("heading", name="Does SPADE keep the decision on this network?")).to_be_visible()
        for name in ("testbed_v2_resnet", "testbed_resnet"):
            main.get_by_test_id("stSelectbox").filter(has_text="Model").click()
            page.get_by_role("option", name=name, exact=True).click()
            if name == "testbed_v2_resnet":
                expect(main.get_by_role("heading", name="Why dense maps find the trojan here")).to_be_visible()
        expect(main.get_by_role("heading", name="What SPADE's effect depends on")).to_be_visible()
        expect(main.get_by_text("100 trojan samples", exact=False).first).to_be_visible()
        expect(main.get_by_text("80% sparsity per layer", exact=False).first).to_be_visible()
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3")
        bars = main.locator(".js-plotly-plot g.trace.bars")
        assert bars.count() >= 5  # the paired-difference panels and the per-method chart
        assert page.get_by_test_id("stException").count() == 0
        page.screenshot(path=str(ARTIFACTS / "benchmarks.png"), full_page=True)


def test_signed_maps_get_a_diverging_scale(server):
    """Choosing the signed channel sum redraws the panels on a scale symmetric around zero."""
    from playwright.sync_api import expect

    with browser_page(server, TIMEOUT_MS, {"width": 1440, "height": 2400}) as page:
        _wait_idle(page)
        main = page.get_by_test_id("stMain")
        expect(main.locator("text.cbtitle").filter(has_text="signed")).to_have_count(0)  # absolute by default
        main.get_by_test_id("stSelectbox").filter(has_text="Channel sum").click()
        page.get_by_role("option", name="signed", exact=True).click()
        _wait_idle(page)
        expect(main.locator(".js-plotly-plot").filter(has_text="signed saliency").first).to_be_visible()
        assert page.get_by_test_id("stException").count() == 0
        page.screenshot(path=str(ARTIFACTS / "debugger_signed.png"))
