"""Shared by the browser tests and `docs/img/make_screenshot.py`: `streamlit run app.py` on a loopback port (a free
one unless given), and a page of it in Debian's headless Chromium (Playwright's sync API)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]  # fmt: skip


def require_browser() -> None:
    """Skip without /usr/bin/chromium (or Playwright), except under CI (env CI set), where that is a failure."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium (`apt-get install -y chromium`)")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    """The Streamlit server exited or did not answer its health check in time (the message ends with its log)."""


@contextmanager
def streamlit_app(env: dict[str, str], log_path: Path, timeout: float = 90, port: int | None = None) -> Iterator[str]:
    """Run `streamlit run app.py` with `env` added to the environment; yield its URL; always stop it.

    Args:
        env: variables added to this process's environment for the server.
        log_path: the server's stdout and stderr (folder created).
        timeout: seconds to wait for its health check; `ServerError` past it, or if it exits.
        port: the loopback port; a free one by default.

    Yields:
        The server's URL, e.g. "http://127.0.0.1:8599".
    """
    port = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, proc, log_path, timeout)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"streamlit exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise ServerError(f"streamlit did not start in {timeout} s:\n{log_path.read_text()[-3000:]}")


@contextmanager
def browser_page(url: str, timeout_ms: int, viewport: dict | None = None) -> Iterator:
    """Headless Chromium (Debian's, `CHROMIUM_ARGS`) on `url`: yields the Playwright page; always closes the browser.

    Args:
        url: the page to open (the app's URL, with a query string if needed).
        timeout_ms: default timeout of the page's actions and of `expect` assertions.
        viewport: e.g. {"width": 1440, "height": 2400}; default Playwright's 1280x720.
    """
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=timeout_ms)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport) if viewport else browser.new_page()
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            yield page
        finally:
            browser.close()
