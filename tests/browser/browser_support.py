"""What the browser tests share: Debian's headless chromium driven by Playwright, and ``python app.py`` started
in a subprocess on a free port and waited for until Gradio answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
START_TIMEOUT_S = 180  # a loaded 2-core machine imports torch + Gradio slowly


def require_playwright() -> ModuleType:
    """``playwright.sync_api``; skips the calling test module when chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"Debian chromium is not installed at {CHROMIUM} (CI installs it in .ci/run; locally: apt-get "
            "install chromium)",
            allow_module_level=True,
        )
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is a dev dependency")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_app(root: Path, app_args: Sequence[str]) -> Iterator[tuple[str, Path]]:
    """``python app.py APP_ARGS --port FREE`` until the block ends; yields (url, log path). Fails the test
    with the log's tail when the app exits or does not answer in time."""
    port = free_port()
    log_path = root / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    env.update({"OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(root / "gradio")})
    # No background build of the embedded index: minutes of CPU that no browser test waits for.
    command = [sys.executable, "app.py", *app_args, "--react-no-background-build", "--port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # "Running on local URL" is printed before the server answers (gradio.md §9)
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}gradio_api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"app.py did not answer within {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.3)
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def headless_chromium(sync_api: ModuleType) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@contextmanager
def app_page(browser, url: str, artifacts: Path) -> Iterator[object]:
    """A fresh browser context and page on the app (tall viewport, 20 s timeouts)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(url)
        yield page
    finally:
        context.close()
