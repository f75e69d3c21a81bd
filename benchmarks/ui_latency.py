"""UI latency of the debugger page: time from a slider change to the redrawn page, on the demo model.

Runs the real app (`app.py` -> `pages/1_Debugger.py`) in-process with `streamlit.testing.v1.AppTest` and times
whole script runs, i.e. everything the server does before the browser can draw:

- cold: first run on a sample (model load, augmentations, Hessians, solve, saliency on both networks);
- warm re-prune: the sparsity slider moves to a new value (cached trace: inverse factors + solve + saliency);
- revisit: the slider goes back to a value seen before (cached pruned copy and cached maps).

With `--browser` the same is timed end to end in headless Chromium (`streamlit run app.py` on a free port): from
the key press on the slider to the page being idle again with all plotly charts drawn.

    python benchmarks/ui_latency.py [--model testbed_resnet] [--example FILE] [--n-aug 64] [--steps 80 70 60]
    python benchmarks/ui_latency.py --browser [--dwell 30]   # needs /usr/bin/chromium and playwright

`--dwell` waits between a redraw and the next key press, as a reader looking at the maps would; the Debugger
pre-prunes the neighbouring sparsities meanwhile (exact OBC solves take seconds each), and each line says whether
the move found its pruned copy cached ("Reused cached trace and pruned network") or re-pruned.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="registry name (default: the app's default, the first testbed model)")
    ap.add_argument("--example", default=None, help="example file in assets/examples (default: the app's default)")
    ap.add_argument("--n-aug", type=int, default=64, help="augmented views (the app's default is 64)")
    ap.add_argument("--sparsity", type=int, default=90, help="first sparsity in percent")
    ap.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[80, 70, 60],
        help="slider positions for warm re-prunes (--browser: one key press per entry)",
    )
    ap.add_argument("--methods", nargs="*", default=None, help="saliency methods (default: the page's default)")
    ap.add_argument("--browser", action="store_true", help="time in headless Chromium instead of AppTest")
    ap.add_argument("--dwell", type=float, default=0.0,
                    help="--browser: seconds between a redraw and the next key press (a reader looking at the maps; "
                         "the background prefetch of the neighbouring sparsities runs meanwhile)")  # fmt: skip
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("SPADE_OFFLINE", "1")
    if args.browser:
        return browser_latency(args)
    import torch
    from streamlit.testing.v1 import AppTest

    from pages.ui import keys

    state = {
        keys.scoped(keys.DEBUGGER, keys.N_AUG): args.n_aug,
        keys.scoped(keys.DEBUGGER, keys.SPARSITY): args.sparsity,
    }
    if args.model:
        state[keys.MODEL] = args.model
    if args.example:
        state[keys.SAMPLE_EXAMPLE] = args.example
    if args.methods is not None:
        state[keys.DEBUGGER_METHODS] = args.methods
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=1800)
    for k, v in state.items():
        at.session_state[k] = v

    rows = [("cold first run", args.sparsity, _timed(at.run), _spade_line(at))]
    _check(at)
    model = at.sidebar.selectbox(key=keys.WIDGET + keys.MODEL).value
    print(f"model {model} · sample {_sample(at)} · {args.n_aug} views · methods {at.multiselect(key=keys.DEBUGGER_METHODS).value}"
          f" · device {os.environ.get('SPADE_DEVICE') or ('cuda' if torch.cuda.is_available() else 'cpu')}"
          f" · torch threads {torch.get_num_threads()}")  # fmt: skip
    slider = lambda: at.sidebar.slider(key=keys.WIDGET + keys.scoped(keys.DEBUGGER, keys.SPARSITY))  # noqa: E731
    for value in args.steps:
        slider().set_value(value)
        rows.append(("warm re-prune", value, _timed(at.run), _spade_line(at)))
        _check(at)
    slider().set_value(args.sparsity)
    rows.append(("revisit (cached)", args.sparsity, _timed(at.run), _spade_line(at)))
    _check(at)

    print(f"\n{'run':<18} {'sparsity':>8} {'page s':>8}  engine")
    for name, value, seconds, line in rows:
        print(f"{name:<18} {value:>7}% {seconds:>8.2f}  {line}")
    warm = [s for n, _, s, _ in rows if n == "warm re-prune"]
    print(f"\nslider -> redraw: cold {rows[0][2]:.2f} s · warm re-prune median {statistics.median(warm):.2f} s "
          f"(min {min(warm):.2f}, max {max(warm):.2f}) · revisit {rows[-1][2]:.2f} s")  # fmt: skip


def browser_latency(args: argparse.Namespace) -> None:
    """Slider key press -> idle page with charts drawn, in Chromium (default model, example and views)."""
    import socket
    import subprocess

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    streamlit = Path(sys.executable).parent / "streamlit"
    cmd = [str(streamlit), "run", "app.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    idle = (
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3"
    )
    args_chromium = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                     "--no-first-run", "--disable-sync", "--disable-quic"]  # fmt: skip
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args_chromium)
            page = browser.new_page(viewport={"width": 1440, "height": 2000})
            page.set_default_timeout(1_800_000)
            t0 = time.perf_counter()
            for _ in range(120):  # the server needs a moment to listen
                try:
                    page.goto(f"http://127.0.0.1:{port}")
                    break
                except Exception:
                    time.sleep(0.5)
            page.wait_for_selector("text=Saliency: dense vs SPADE")
            page.wait_for_function(idle)
            print(f"cold: page load -> first SPADE panel drawn {time.perf_counter() - t0:.2f} s")
            thumb = page.get_by_test_id("stSidebar").get_by_test_id("stSlider").first.get_by_role("slider")
            value = int(thumb.input_value())
            for _ in args.steps:  # one key press per step: value - 1, value - 2, ...
                time.sleep(args.dwell)
                thumb.focus()
                t0 = time.perf_counter()
                thumb.press("ArrowLeft")
                value -= 1
                page.locator(".js-plotly-plot text", has_text=f"SPADE {value}%").first.wait_for()
                page.wait_for_function(idle)
                took = time.perf_counter() - t0
                reused = page.get_by_text("Reused cached trace")
                how = reused.first.inner_text() if reused.count() else "?"
                print(f"warm move to {value}% after {args.dwell:g} s: key press -> redrawn {took:.2f} s ({how})")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _timed(run) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def _spade_line(at) -> str:
    labels = [s.label for s in at.status] + [
        c.value for c in at.caption if "trace" in c.value or "SPADE ran" in c.value
    ]
    return labels[0] if labels else "?"


def _sample(at) -> str:
    from pages.ui import keys

    pickers = [w for w in at.sidebar.selectbox if w.key == keys.WIDGET + keys.SAMPLE_EXAMPLE]
    return pickers[0].value if pickers else "upload"


def _check(at) -> None:
    if at.exception:
        raise SystemExit(f"the page raised: {at.exception[0].value}")
    if at.error:
        raise SystemExit(f"the page shows an error: {at.error[0].value}")


if __name__ == "__main__":
    main()
