"""Acceptance in a real browser: ``python app.py`` in a subprocess on a tiny LLaVA-NeXT, driven by Playwright
through Debian's headless chromium. Upload, ask, watch the answer stream, Stop (the backend ends the answer with
finish_reason "cancelled": the status line and the app's log say so), Regenerate, a second image in the same
conversation with the AnyRes token count checked against ``anyres.num_image_tokens``, Undo, examples, and bad
input.
Screenshots go to test-artifacts/app/.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.browser.browser_support import ROOT, app_page, require_playwright, running_app, set_max_tokens
from tests.support.tiny_llava import TINY_ANYRES
from vision_common.anyres.geometry import num_image_tokens

pytestmark = pytest.mark.slow  # spawns processes or serves HTTP

ARTIFACTS = ROOT / "test-artifacts" / "app"
STREAM_DELAY_MS = 40  # slow enough to watch the stream and press Stop mid-answer

sync_api = require_playwright()
expect = sync_api.expect


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_llava_endless_dir):
    root = tmp_path_factory.mktemp("browser")
    model = tiny_llava_endless_dir  # answers run to max_new_tokens
    Image.new("RGB", (100, 50), (200, 30, 30)).save(root / "red.png")
    Image.new("RGB", (32, 32), (30, 30, 200)).save(root / "blue.png")
    (root / "notes.txt").write_text("not an image")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (root / "big.png").write_bytes(b"\x89PNG" + bytes(1_200_000))
    shutil.copyfile(root / "blue.png", root / "scene_0.png")
    (root / "examples.json").write_text(
        json.dumps([{"image": "scene_0.png", "question": "How many shapes?"}])
    )
    args = ["--model", str(model), "--device", "cpu", "--stream-delay-ms", str(STREAM_DELAY_MS)]
    args += ["--max-upload-mb", "1", "--feedback-log", "", "--examples", str(root / "examples.json")]
    with running_app(root, args) as (url, log_path):
        yield type("App", (), {"url": url, "root": root, "log": log_path})


@pytest.fixture()
def page(app, browser):
    with app_page(browser, app.url, ARTIFACTS) as page:
        page.locator("#chat-input textarea").wait_for()
        yield page


def ask(page, text: str, image: Path | None = None) -> None:
    if image is not None:
        page.locator("#chat-input input[type=file]").set_input_files(str(image))
        expect(page.locator("#chat-input img").first).to_be_visible()  # the upload finished
    box = page.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")


def plain_words(text: str) -> str:
    return " ".join(re.sub(r"[*_`~]", "", text).split())


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_stream_stop_regenerate_second_image_and_anyres_count(app, page):
    status, stop = page.locator("#chat-status"), page.locator("#chat-stop")
    answer = page.get_by_test_id("bot").last
    ask(page, "What is in the picture?", app.root / "red.png")
    expect(answer).to_contain_text(re.compile(r"\S{3}"))
    first_seen = answer.inner_text()
    expect(stop).to_be_enabled()
    expect(answer).not_to_have_text(first_seen)  # the answer grows while it streams
    # The streaming cursor may follow a space or a line break depending on the text so far; strip it. The
    # random model's tokens may hold Markdown marks ("*", "_", "`") that render differently once their
    # closing mark arrives, so compare the words without them.
    assert plain_words(answer.inner_text()).startswith(plain_words(first_seen.rstrip().removesuffix("▌")))
    shot(page, "01-streaming")

    stop.click()
    expect(status).to_contain_text("finish_reason cancelled")
    expect(stop).to_be_disabled()
    expect(answer).to_contain_text("stopped after")
    assert re.search(r"finish_reason=cancelled completion_tokens=\d+", app.log.read_text())
    tokens = int(re.search(r"after (\d+) tokens?", status.inner_text()).group(1))
    assert 0 < tokens < 512  # the model itself stopped early, not only the display
    shot(page, "02-stopped")

    set_max_tokens(page, 12)
    page.locator("#chat-regenerate").click()
    expect(status).to_contain_text("finish_reason length, 12 tokens", timeout=30_000)
    expect(page.get_by_test_id("bot")).to_have_count(1)  # the stopped answer was replaced
    shot(page, "03-regenerated")

    ask(page, "And this one?", app.root / "blue.png")
    expect(status).to_contain_text("finish_reason length, 12 tokens, 88 image tokens", timeout=30_000)
    expected = num_image_tokens((32, 32), TINY_ANYRES)
    expect(page.locator("#anyres-token-count textarea")).to_have_value(str(expected))
    expect(page.locator("#anyres-image input")).to_have_value("image 2 of 2: blue.png")
    expect(page.locator("#anyres-summary")).to_contain_text(f"{expected} image tokens for blue.png")
    expect(page.get_by_test_id("bot")).to_have_count(2)
    shot(page, "04-second-image-anyres")

    page.locator("#chat-undo").click()  # the last question comes back into the box, image included
    expect(page.locator("#chat-input textarea")).to_have_value("And this one?")
    expect(page.locator("#chat-input img")).to_have_count(1)
    expect(page.get_by_test_id("bot")).to_have_count(1)
    expect(page.locator("#anyres-image input")).to_have_value("image 1 of 1: red.png")


def test_bad_input_shows_a_clear_message_and_the_app_keeps_serving(app, page):
    status = page.locator("#chat-status")
    ask(page, "   ")
    expect(status).to_contain_text("the message is empty")
    for name, expected in [
        ("notes.txt", "not a recognised image file"),
        ("corrupt.png", "corrupt.png was not accepted"),
    ]:
        page.locator("#chat-input input[type=file]").set_input_files(str(app.root / name))
        page.locator("#chat-input textarea").fill("What is this?")
        page.locator("#chat-input textarea").press("Enter")
        expect(status).to_contain_text(expected)
        page.locator("#chat-clear").click()
        expect(status).to_contain_text("New conversation")
    page.locator("#chat-input input[type=file]").set_input_files(str(app.root / "big.png"))
    expect(page.get_by_text("exceed the maximum allowed size of 1.0 Mb")).to_be_visible()
    shot(page, "05-bad-input")
    set_max_tokens(page, 4)
    page.get_by_text("How many shapes?").first.click()  # the example fills the input with its scene
    expect(page.locator("#chat-input textarea")).to_have_value("How many shapes?")
    page.locator("#chat-input textarea").press("Enter")
    expect(status).to_contain_text("finish_reason length, 4 tokens, 36 image tokens", timeout=30_000)
    shot(page, "06-example-answered")
