"""What the browser tests share: Debian's headless chromium driven by Playwright, and ``python app.py`` started
in a subprocess on a free port and waited for until Gradio answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.gradio_wait import wait_until_gradio_answers

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
def running_app(
    root: Path, app_args: Sequence[str], *, background_build: bool = False
) -> Iterator[tuple[str, Path]]:
    """``python app.py APP_ARGS --port FREE`` until the block ends; yields (url, log path). Fails the test
    with the log's tail when the app exits or does not answer in time."""
    port = free_port()
    log_path = root / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    env.update({"OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(root / "gradio")})
    # Unless a test watches it: no background build of the embedded index, minutes of CPU nobody waits for.
    no_build = [] if background_build else ["--react-no-background-build"]
    command = [sys.executable, "app.py", *app_args, *no_build, "--port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_gradio_answers(process, url, log_path, "app.py", START_TIMEOUT_S)
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


def set_max_tokens(page, value: int) -> None:
    """Set the chat's "Max new tokens" (in the Parameters accordion) and wait until the component holds it."""
    set_chat_parameter(page, "chat-max-tokens", value)


def set_chat_parameter(page, elem_id: str, value: float) -> None:
    """Set one slider of the chat's Parameters accordion (``chat-max-tokens``, ``chat-temperature``, ...) and
    wait until the component holds it."""
    from playwright.sync_api import expect  # the module is importable once require_playwright() passed

    number = page.locator(f"#{elem_id} input[type=number]")
    # The slider's range input shows the component's value, which is what an event sends; the number field can
    # hold the typed text before the component takes it (seen once: the field said 12, the request said 512).
    slider = page.locator(f"#{elem_id} input[type=range]")
    if not number.is_visible():
        page.locator("#chat-parameters").get_by_text("Parameters").click()
    expect(number).to_be_visible()
    # The accordion mounts its content while it opens, and a fill that lands during that can be dropped (seen
    # once in CI: the field kept 512), so the fill is retried until the value holds.
    text = f"{value:g}"
    for _ in range(3):
        number.fill(text)
        number.press("Enter")
        try:
            expect(number).to_have_value(text, timeout=2_000)
            expect(slider).to_have_value(text, timeout=2_000)
            return
        except AssertionError:
            continue
    expect(number).to_have_value(text)
    expect(slider).to_have_value(text)
