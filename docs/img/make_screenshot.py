"""Redo docs/img/debugger.png: the Debugger page on its default model and image, in Debian's headless Chromium.

    .venv/bin/python docs/img/make_screenshot.py [--port 8599] [--timeout 900] [--out docs/img/debugger.png]

Starts `streamlit run app.py` (offline, headless) in the background and opens it at 1400x900 in headless Chromium,
both with the browser tests' helpers (`tests/e2e/server.py`: `streamlit_app`, `browser_page`); waits until the
script run is over and the saliency maps are drawn (minutes on a busy CPU: the first SPADE run on a sample computes
the Hessians), scrolls the maps into view, saves the PNG (quantised with Pillow when it is over 400 KB) and always
stops the server. Needs `/usr/bin/chromium` (`apt-get install -y chromium`) and `playwright` (the dev extra).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.server import ServerError, browser_page, streamlit_app  # noqa: E402

ENV = {"SPADE_OFFLINE": "1", "SPADE_PREFETCH": "0"}
VIEWPORT = {"width": 1400, "height": 900}
MAX_BYTES = 400_000
# the run is over (no "Running…" widget, no spinner) and a saliency chart is drawn below the "Saliency" heading
MAPS_DRAWN = """() => {
  const h = [...document.querySelectorAll('h3')].find(e => e.textContent.includes('Saliency'));
  if (!h || document.querySelector('[data-testid="stStatusWidget"]') || document.querySelector('[data-testid="stSpinner"]')) return false;
  return [...document.querySelectorAll('.js-plotly-plot .main-svg')]
    .some(p => h.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING);
}"""


def shoot(url: str, out: Path, timeout_s: float) -> None:
    """Open `url` at 1400x900, wait for the maps, scroll them into view and save the screenshot to `out`."""
    with browser_page(url, int(timeout_s * 1000), VIEWPORT) as page:
        page.wait_for_function(MAPS_DRAWN, timeout=timeout_s * 1000)
        page.wait_for_timeout(3000)  # plotly's last layout pass
        page.wait_for_function(MAPS_DRAWN, timeout=timeout_s * 1000)
        heading = page.locator("h3", has_text="Saliency").first
        heading.evaluate("h => h.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(1500)
        out.write_bytes(page.screenshot())


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
    try:
        with streamlit_app(ENV, args.log, timeout=180, port=args.port) as url:
            shoot(url, args.out, args.timeout)
    except ServerError as e:
        raise SystemExit(str(e)) from None
    shrink(args.out)
    print(f"{args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
