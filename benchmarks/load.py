"""Load benchmark: many users on one server at once.

Starts the real server (`streamlit run app.py` on a free loopback port, a fresh study database and cache folder),
then, at the same time:
- `--sessions` (default 8) headless Chromium sessions (Playwright, Debian's /usr/bin/chromium) use the Debugger,
  each uploading a different shipped example and waiting for the dense and SPADE saliency panels;
- `--participants` (default 20) simulated participants open their own token link of an open study and answer
  every trial (`--trials`, default 4) in the browser.

Prints p50/p95 latency per kind of action (page load, Debugger run after an upload, one participant answer),
the number of errors (timeouts, exceptions shown on a page, tracebacks in the server log), the server's peak
resident memory (the server process and its children, sampled every 0.5 s) and checks that every answer is in
the database (exactly one per participant and trial).

    python benchmarks/load.py                       # 8 Debugger sessions + 20 participants x 4 trials
    python benchmarks/load.py --sessions 2 --participants 5   # a lighter run (say so when quoting it)

The study uses synthetic stimuli (flat colours), so participants measure the app and the store, not the stimulus
pre-computation. Needs /usr/bin/chromium and `playwright` (the dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]  # fmt: skip
PASSWORD = "load-benchmark"
SHOTS = os.environ.get("SPADE_LOAD_SHOTS")  # a folder: screenshots of failed Debugger sessions go there


# ------------------------------------------------------------------------------------------ the study


def make_study(db: Path, n_participants: int, trials: int) -> tuple[str, list[str]]:
    """An open study with synthetic stimuli and `n_participants` issued tokens."""
    from PIL import Image

    from spade_engine.study import Stimulus, StudyDesign, StudyStore
    from spade_engine.study.render import to_png
    from spade_engine.study.samples import testbed_spec

    store = StudyStore(str(db))
    items = tuple({"sample": testbed_spec(i % 10, i % 2, 100 + i)} for i in range(8))
    design = StudyDesign(name="Load benchmark", model="testbed_resnet", conditions=("dense_vis", "spade_vis"),
                         items=items, trials_per_participant=trials, seed=1)  # fmt: skip
    study_id = store.create_study(design)
    rng = random.Random(0)
    for i in range(len(items)):
        img = to_png(Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3))))
        for c in design.conditions:
            expl = to_png(Image.new("RGB", (64, 64), (0, 0, 0) if "dense" in c else (255, 255, 255)))
            meta = {"boxes": [[0, 0, 16, 16], [48, 48, 64, 64]], "sample": f"item {i}"}
            store.put_stimulus(study_id, Stimulus(i, c, img, img, img, rng.randrange(2), expl, meta))
    store.set_status(study_id, "open")
    tokens = [store.add_participant(study_id, f"load{k:02d}").token for k in range(n_participants)]
    store.dispose()
    return study_id, tokens


# ----------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("streamlit did not start in 120 s")


class PeakRSS:
    """Samples the resident memory of a process and its children every 0.5 s in a thread; `peak` in bytes."""

    def __init__(self, pid: int):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            self._stop.wait(0.5)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


# ------------------------------------------------------------------------------------------ the users

SETTLED = ("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
           " && document.querySelectorAll('[data-stale=\"true\"]').length === 0")  # fmt: skip


PANELS_DRAWN = (
    "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
    " && document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3"
)  # as tests/e2e/test_browser.py


class Record:
    """Latencies per kind of action and errors, shared by every simulated user."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {}
        self.errors: list[str] = []

    def add(self, kind: str, seconds: float) -> None:
        self.latency.setdefault(kind, []).append(seconds)


async def _exception_shown(page) -> bool:  # noqa: ANN001
    return await page.locator("[data-testid='stException']").count() > 0


async def debugger_session(browser, url: str, example: Path, rec: Record, timeout_ms: int) -> None:  # noqa: ANN001
    """Open the Debugger, wait for the first run, upload `example`, wait for its dense and SPADE panels."""
    context = await browser.new_context(viewport={"width": 1440, "height": 2400})
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    try:
        start = time.perf_counter()
        await page.goto(url)
        await page.get_by_role("heading", name="SPADE Debugger").wait_for()
        await page.wait_for_function(PANELS_DRAWN)
        rec.add("debugger: first page", time.perf_counter() - start)
        sidebar = page.get_by_test_id("stSidebar")
        await sidebar.get_by_test_id("stRadio").get_by_text("Upload", exact=True).click()
        async with page.expect_file_chooser() as chooser:
            await (
                sidebar.get_by_test_id("stFileUploaderDropzone")
                .get_by_role("button", name="Upload", exact=True)
                .click()
            )
        start = time.perf_counter()
        await (await chooser.value).set_files(str(example))
        await sidebar.get_by_text(f"{example.name} as the model sees it", exact=False).first.wait_for()
        await page.wait_for_timeout(300)
        await page.wait_for_function(PANELS_DRAWN)
        rec.add("debugger: SPADE on a new sample", time.perf_counter() - start)
        if await _exception_shown(page):
            rec.errors.append(f"debugger {example.name}: an exception is shown")
    except Exception as e:  # noqa: BLE001 (counted, the run goes on)
        rec.errors.append(f"debugger {example.name}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
        if SHOTS:
            await page.screenshot(path=str(Path(SHOTS) / f"debugger_{example.stem}.png"), full_page=True)
    finally:
        await context.close()


async def participant(browser, url: str, study_id: str, token: str, trials: int, rec: Record, timeout_ms: int) -> None:  # noqa: ANN001
    """Open the token link and answer every trial (alternating A / B), waiting for each next trial."""
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    try:
        start = time.perf_counter()
        await page.goto(f"{url}/?participant={token}&study={study_id}")
        await page.get_by_text(f"Trial 1 of {trials}").first.wait_for()  # .first: a rerun shows stale + new
        await page.wait_for_function(SETTLED)
        rec.add("participant: first trial", time.perf_counter() - start)
        for k in range(trials):
            await page.get_by_text("Explanation of the network's decision").first.wait_for()
            await page.wait_for_function(SETTLED)
            start = time.perf_counter()
            await page.get_by_role("button", name="◀ Patch A" if k % 2 == 0 else "Patch B ▶").click()
            done = f"Trial {k + 2} of {trials}" if k + 1 < trials else "Thank you"
            await page.get_by_text(done).first.wait_for()
            rec.add("participant: answer", time.perf_counter() - start)
        if await _exception_shown(page):
            rec.errors.append(f"participant {token[:4]}…: an exception is shown")
    except Exception as e:  # noqa: BLE001
        rec.errors.append(f"participant {token[:4]}…: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    finally:
        await context.close()


async def run_users(url: str, study_id: str, tokens: list[str], examples: list[Path], trials: int,
                    timeout_ms: int) -> Record:  # fmt: skip
    from playwright.async_api import async_playwright

    rec = Record()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            users = [debugger_session(browser, url, ex, rec, timeout_ms) for ex in examples]
            users += [participant(browser, url, study_id, t, trials, rec, timeout_ms) for t in tokens]
            await asyncio.gather(*users)
        finally:
            await browser.close()
    return rec


# ------------------------------------------------------------------------------------------- report


def check_answers(db: Path, study_id: str, n_participants: int, trials: int) -> tuple[int, int, int]:
    """(answers stored, answers expected, duplicates or missing)."""
    from spade_engine.study import StudyStore

    store = StudyStore(str(db))
    answers = store.answers(study_id)
    store.dispose()
    got = {(a.participant, a.trial_index) for a in answers}
    want = {(f"load{k:02d}", t) for k in range(n_participants) for t in range(trials)}
    return len(answers), len(want), len(got ^ want) + (len(answers) - len(got))


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"n={len(values)}  " + (f"{values[0]:.2f} s" if values else "—")
    q = statistics.quantiles(values, n=20, method="inclusive")  # 5 % steps: q[9] = p50, q[18] = p95
    return f"n={len(values):3d}  p50 {q[9]:7.2f} s  p95 {q[18]:7.2f} s  max {max(values):7.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8, help="concurrent Debugger browser sessions")
    ap.add_argument("--participants", type=int, default=20, help="concurrent simulated study participants")
    ap.add_argument("--trials", type=int, default=4, help="trials per participant")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one browser step may take")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    entries = json.loads((ROOT / "assets" / "examples" / "index.json").read_text())["examples"]
    v1 = [ROOT / "assets" / "examples" / e["file"] for e in entries if e["file"].startswith("testbed_c")]
    examples = (v1 * (args.sessions // len(v1) + 1))[: args.sessions]  # different samples while there are enough

    with tempfile.TemporaryDirectory(prefix="spade_load_") as tmp:
        tmp = Path(tmp)
        db = tmp / "study.db"
        study_id, tokens = make_study(db, args.participants, args.trials)
        env = {"SPADE_STUDY_DB": str(db), "SPADE_CACHE_DIR": str(tmp / "cache"), "SPADE_OFFLINE": "1",
               "SPADE_DEVICE": "cpu", "SPADE_STUDY_PASSWORD": PASSWORD}  # fmt: skip
        log = tmp / "streamlit.log"
        proc, url = start_server(env, log)
        rss = PeakRSS(proc.pid)
        start = time.perf_counter()
        try:
            rec = asyncio.run(run_users(url, study_id, tokens, examples, args.trials, int(args.timeout * 1000)))
        finally:
            wall = time.perf_counter() - start
            peak = rss.stop()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        tracebacks = log.read_text().count("Traceback")
        stored, expected, wrong = check_answers(db, study_id, args.participants, args.trials)

    print(f"\n== Load: {args.sessions} Debugger sessions (different samples) + {args.participants} participants x "
          f"{args.trials} trials, one server, {os.cpu_count()} CPU cores, wall {wall:.0f} s")  # fmt: skip
    for kind in sorted(rec.latency):
        print(f"{kind:34s} {quantiles(rec.latency[kind])}")
    print(f"errors: {len(rec.errors)} in the browsers, {tracebacks} tracebacks in the server log")
    for e in rec.errors[:20]:
        print(f"  - {e}")
    print(f"peak RSS of the server: {peak / 2**20:.0f} MiB")
    print(f"answers in the database: {stored} of {expected} expected; missing or duplicated: {wrong}")


if __name__ == "__main__":
    main()
