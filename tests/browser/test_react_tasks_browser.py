"""Acceptance of issue 19 in a real browser, on a freshly started ``python app.py`` that builds the embedded
SynthWorld index in the background (as it does by default): while the index builds, a second browser session
chats and both sessions see the build's progress as a percentage that moves on; and the three SynthWorld tasks
(colors, shapes, species) retrieve in text-to-text and text-to-image mode, each ending with filled galleries,
table and pictures and no toast.

The world is a real SynthWorld world (the tiny preset with an 8,000-pair web pool, so that the background build
lasts long enough to be watched: 50 s at 175 images/s, minutes on a loaded machine). The build is the app's own,
with the committed SynthWorld CLIP, and is not waited for: the tasks retrieve from a user index over the
world's first 600 pairs, built before the app starts by ``react_explorer.build_index`` with the same CLIP. One
app process and one explorer page serve both tests, in file order; the chat runs a tiny LLaVA-NeXT.
Screenshots go to test-artifacts/react-tasks/.
"""

from __future__ import annotations

import dataclasses
import re
import time

import pyarrow.parquet as pq
import pytest

from react_explorer.cli.build_index import main as build_main
from react_explorer.ui.query_inputs import task_classes_text
from tests.browser.browser_support import ROOT, app_page, require_playwright, running_app, set_max_tokens
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world

pytestmark = pytest.mark.slow  # spawns processes or serves HTTP

ARTIFACTS = ROOT / "test-artifacts" / "react-tasks"
POOL_SIZE = (
    8000  # the background build's pool: 50 s of embedding at 175 images/s, minutes on a loaded machine
)
TASKS_INDEX_SIZE = 600
TASKS = ("colors", "shapes", "species")
# "42% (3,360 / 8,000 images)", "91% (2,100 / 8,000 captions)" or "99% (8,000 pairs embedded; writing the index)".
PROGRESS = re.compile(
    r"Building the embedded SynthWorld index: (\d+)% "
    r"\((?:[\d,]+ / ([\d,]+) (?:images|captions)|([\d,]+) pairs embedded; writing the index)\)"
)

sync_api = require_playwright()
expect = sync_api.expect


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_llava_dir):
    root = tmp_path_factory.mktemp("react_tasks")
    world = root / "world"
    bigger_pool = dataclasses.replace(WorldConfig.preset("tiny"), pool_size=POOL_SIZE)
    generate_world(world, bigger_pool, seed=0, workers=1)
    # The tasks' index: the first pairs of the same pool (the parquet sits beside the pool's, so the relative
    # image paths resolve), embedded by the CLIP the app uses for the embedded index (build_index's default).
    first = world / "pool" / "first.parquet"
    pq.write_table(pq.read_table(world / "pool" / "pool.parquet").slice(0, TASKS_INDEX_SIZE), first)
    index = root / "tasks-index"
    assert build_main(["--pool", str(first), "--out", str(index), "--workers", "0", "--no-progress"]) == 0
    args = [
        "--model",
        str(tiny_llava_dir),
        "--device",
        "cpu",
        "--feedback-log",
        "",
        "--react-index",
        str(index),
    ]
    args += ["--react-world", str(world), "--react-cache", str(root / "cache")]
    with running_app(root, args, background_build=True) as (url, log_path):
        yield type("App", (), {"url": url, "root": root, "world": world, "log": log_path, "index": index})


@pytest.fixture(scope="module")
def explorer(app, browser):
    """The first visitor's page, on the explorer tab, kept for both tests."""
    with app_page(browser, app.url, ARTIFACTS) as page:
        page.get_by_role("tab", name="REACT explorer").click()
        page.locator("#react-classes textarea").wait_for()
        yield page


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def progress_of(page) -> tuple[int, str]:
    """(percent, the progress part of the line) once the index line shows the build's progress."""
    line = page.locator("#react-index-info")
    expect(line).to_contain_text(PROGRESS, timeout=60_000)  # after "0% (loading the CLIP)"
    match = PROGRESS.search(line.inner_text())
    assert int((match.group(2) or match.group(3)).replace(",", "")) == POOL_SIZE, match.group(0)
    return int(match.group(1)), match.group(0)


def wait_for_progress_beyond(page, percent: int, timeout_s: float = 60.0) -> int:
    """The page's percentage once it exceeds ``percent`` (the build still running), read as its timer ticks."""
    deadline = time.monotonic() + timeout_s
    while True:
        current, line = progress_of(page)
        if current > percent:
            return current
        assert time.monotonic() < deadline, f"still {line!r} after {timeout_s:.0f} s"
        page.wait_for_timeout(500)


def test_a_second_visitor_chats_while_the_index_builds_and_both_see_its_progress(app, explorer, browser):
    first_percent, first_line = progress_of(explorer)
    assert first_percent < 90, first_line  # still early enough that the rest of the test happens mid-build
    shot(explorer, "01-first-visitor-sees-progress")

    with app_page(browser, app.url, ARTIFACTS) as second:
        second.locator("#chat-input textarea").wait_for()
        set_max_tokens(second, 8)
        box = second.locator("#chat-input textarea")
        box.fill("Hello, what can you see?")
        box.press("Enter")
        # A whole answer while the build runs (the progress read below proves it still runs).
        expect(second.locator("#chat-status")).to_contain_text("finish_reason", timeout=60_000)
        expect(second.get_by_test_id("bot").last).to_contain_text(re.compile(r"\S"))
        shot(second, "02-second-visitor-chatted")
        second.get_by_role("tab", name="REACT explorer").click()
        second_percent, _ = progress_of(second)
        shot(second, "03-second-visitor-sees-progress")

    # The first page's line moves on by itself (its timer ticks every 3 s), past what the second page showed.
    assert second_percent >= first_percent
    assert wait_for_progress_beyond(explorer, second_percent) > second_percent
    shot(explorer, "04-progress-moved-on")


@pytest.mark.parametrize("task", TASKS)
def test_the_synthworld_tasks_retrieve_in_t2t_and_t2i(app, explorer, task):
    classes = task_classes_text(app.world / "tasks", task).splitlines()
    status = explorer.locator("#react-status")
    label = f"{app.index.name} ({TASKS_INDEX_SIZE} pairs, 128-d)"
    if explorer.locator("#react-index input").input_value() != label:
        explorer.locator("#react-index input").click()
        explorer.get_by_role("option", name=label).click()
    expect(explorer.locator("#react-index-info")).to_contain_text(f"{TASKS_INDEX_SIZE} pairs, 128-d")
    explorer.locator("#react-task input").click()
    explorer.get_by_role("option", name=task, exact=True).click()
    expect(explorer.locator("#react-classes textarea")).to_have_value("\n".join(classes))
    for mode in ("t2t", "t2i"):
        explorer.locator("#react-mode").get_by_label(mode).check()
        explorer.locator("#react-run").click()
        prompts = (
            f"{len(classes)} classes x 4 templates (synthworld) = {4 * len(classes)} prompts, {mode}, k = 50"
        )
        expect(status).to_contain_text(prompts, timeout=60_000)
        expect(status).to_contain_text(f"distinct pairs of {TASKS_INDEX_SIZE}")
        assert "Error" not in status.inner_text()
        for slot, name in enumerate(classes):
            expect(explorer.locator(f"#react-gallery-{slot}")).to_contain_text(
                re.compile(rf"{re.escape(name)}: \d+ pairs")
            )
        expect(explorer.locator("#react-gallery-0 .thumbnail-item").first).to_be_visible()
        expect(explorer.locator(f"#react-gallery-{len(classes)}")).to_be_hidden()
        # One row per class (the table is virtualised: rows outside its viewport may not be in the page yet).
        summary = explorer.locator("#react-summary")
        expect(summary.get_by_role("row", name=re.compile(rf"^{re.escape(classes[0])} \d+ "))).to_have_count(
            1
        )
        expect(summary.get_by_role("row").nth(1)).to_contain_text(classes[0])
        for picture in ("#react-overlap", "#react-histogram"):  # lazy images: loaded once scrolled to
            explorer.locator(picture).scroll_into_view_if_needed()
            expect(explorer.locator(f"{picture} img")).to_be_visible()
        expect(explorer.get_by_test_id("toast-body")).to_have_count(0)  # no warning, no error
        shot(explorer, f"05-{task}-{mode}")
