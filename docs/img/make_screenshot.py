"""Redo docs/img/debugger.png: the Debugger page on its default model and image, in Debian's headless Chromium.

    .venv/bin/python docs/img/make_screenshot.py [--port 8599] [--timeout 900] [--out docs/img/debugger.png]

Starts `streamlit run app.py` (offline, headless) in the background, opens it at 1400x900 with Playwright, waits
until the script run is over and the saliency maps are drawn (minutes on a busy CPU: the first SPADE run on a
sample computes the Hessians), scrolls the maps into view, saves the PNG (quantised with Pillow when it is over
400 KB) and always stops the server. Needs `/usr/bin/chromium` (`apt-get install -y chromium`) and `playwright`
(the dev extra). Same approach as tests/e2e/server.py.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]  # fmt: skip
VIEWPORT = {"width": 1400, "height": 900}
MAX_BYTES = 400_000
# the run is over (no "Running…" widget, no spinner) and a saliency chart is drawn below the "Saliency" heading
MAPS_DRAWN = """() => {
  const h = [...document.querySelectorAll('h3')].find(e => e.textContent.includes('Saliency'));
  if (!h || document.querySelector('[data-testid="stStatusWidget"]') || document.querySelector('[data-testid="stSpinner"]')) return false;
  return [...document.querySelectorAll('.js-plotly-plot .main-svg')]
    .some(p => h.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING);
}"""


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    """`streamlit run app.py` offline and headless on `port`, output to `log_path`."""
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "SPADE_OFFLINE": "1", "SPADE_PREFETCH": "0"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until the server answers its health check; SystemExit if it exits or takes longer than `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"streamlit did not start in {timeout} s")


def shoot(url: str, out: Path, timeout_s: float) -> None:
    """Open `url` at 1400x900, wait for the maps, scroll them into view and save the screenshot to `out`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            page.wait_for_function(MAPS_DRAWN, timeout=timeout_s * 1000)
            page.wait_for_timeout(3000)  # plotly's last layout pass
            page.wait_for_function(MAPS_DRAWN, timeout=timeout_s * 1000)
            heading = page.locator("h3", has_text="Saliency").first
            heading.evaluate("h => h.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(1500)
            out.write_bytes(page.screenshot())
        finally:
            browser.close()


def shrink(path: Path, max_bytes: int = MAX_BYTES) -> None:
    """Quantise (then, if needed, downscale) the PNG until it is under `max_bytes`."""
    from PIL import Image

    if path.stat().st_size <= max_bytes:
        return
    img = Image.open(path).convert("RGB")
    for scale in (1.0, 0.85, 0.7):
        size = (round(img.width * scale), round(img.height * scale))
        small = img.resize(size, Image.LANCZOS) if scale < 1 else img
        buf = io.BytesIO()
        small.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, "PNG", optimize=True
        )
        if buf.tell() <= max_bytes:
            break
    path.write_bytes(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8599)
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the maps")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "debugger.png")
    ap.add_argument("--log", type=Path, default=Path("/tmp/spade_screenshot_server.log"))
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    proc = start_server(args.port, args.log)
    try:
        wait_healthy(url, proc, 180)
        shoot(url, args.out, args.timeout)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shrink(args.out)
    print(f"{args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
