"""Acceptance of the REACT explorer tab in a real browser (issue 6): ``python app.py --react-index DIR`` in a
subprocess, driven by Playwright through Debian's headless chromium. Enter class names, run, see one gallery per
class, open a result (its metadata is shown), ask for more like it, export the subset (the parquet exists and has
the rows the page reported), and bad input (an empty class list) answered in the status line while the app keeps
serving. The index is a 24-pair toy pool embedded by a random-weight tiny CLIP (tests/support/react_support.py), so
a template file holding only ``{}`` makes each query equal to a caption, and the top results are those rows.
Screenshots go to test-artifacts/react/.
"""

from __future__ import annotations

import os
import re

import httpx
import pyarrow.parquet as pq
import pytest

from react_explorer.cli.build_index import main as build_main
from tests.browser.browser_support import ROOT, app_page, require_playwright, running_app
from tests.support.react_support import save_random_tiny_clip, toy_caption, write_toy_pool

pytestmark = pytest.mark.slow  # spawns processes or serves HTTP

ARTIFACTS = ROOT / "test-artifacts" / "react"
EXPORTS = ROOT / "runs" / "react" / "exports"  # the tab's confined export folder
POOL_SIZE = 24
K = 6

sync_api = require_playwright()
expect = sync_api.expect


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("react_browser")
    clip = save_random_tiny_clip(root)
    pool = write_toy_pool(root / "pool", count=POOL_SIZE)
    index = root / "toy-index"
    rc = build_main(["--pool", str(pool), "--out", str(index), "--model", f"local-dir:{clip}", "--workers", "0",
                     "--batch-size", "8", "--no-progress"])  # fmt: skip
    assert rc == 0
    (root / "exact.txt").write_text("{}\n")
    args = ["--device", "cpu", "--no-preload", "--feedback-log", "", "--react-index", str(index)]
    with running_app(root, args) as (url, log_path):
        yield type("App", (), {"url": url, "root": root, "log": log_path, "index": index})


@pytest.fixture()
def page(app, browser):
    with app_page(browser, app.url, ARTIFACTS) as page:
        page.get_by_role("tab", name="REACT explorer").click()
        page.locator("#react-classes textarea").wait_for()
        yield page


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def choose_index(page, label: str) -> None:
    page.locator("#react-index input").click()
    page.get_by_role("option", name=label).click()
    expect(page.locator("#react-index input")).to_have_value(label)


def test_classes_galleries_result_details_more_like_this_and_export(app, page):
    status = page.locator("#react-status")
    choose_index(page, f"{app.index.name} ({POOL_SIZE} pairs, 32-d)")
    expect(page.locator("#react-index-info")).to_contain_text(f"{POOL_SIZE} pairs, 32-d")
    page.locator("#react-classes textarea").fill("red square\nblue circle")
    page.locator("#react-template-file input[type=file]").set_input_files(str(app.root / "exact.txt"))
    expect(page.locator("#react-templates input[value=file]")).to_be_checked()  # the upload picks the file
    page.locator("#react-mode").get_by_label("t2t").check()
    k = page.locator("#react-k input[type=number]")
    k.fill(str(K))
    k.press("Enter")
    page.locator("#react-dedup input").uncheck()
    page.locator("#react-run").click()

    # The first retrieval loads the CLIP into the app process: seconds on a busy 2-core machine.
    expect(status).to_contain_text(
        "2 classes x 1 templates (exact.txt) = 2 prompts, t2t, k = 6", timeout=60_000
    )
    for slot, name in enumerate(("red square", "blue circle")):
        gallery = page.locator(f"#react-gallery-{slot}")
        expect(gallery).to_contain_text(f"{name}: {K} pairs")
        expect(gallery.locator(".thumbnail-item")).to_have_count(K)
        expect(gallery.locator("img")).to_have_count(K)
    expect(page.locator("#react-gallery-2")).to_be_hidden()
    expect(page.locator("#react-summary")).to_contain_text("blue circle")
    expect(page.locator("#react-overlap img")).to_be_visible()
    expect(page.locator("#react-histogram img")).to_be_visible()
    shot(page, "01-galleries")

    page.locator("#react-gallery-0 .thumbnail-item").first.click()
    detail = page.locator("#react-detail")
    expect(detail).to_contain_text("red square #1: pool row")
    row = int(re.search(r"pool row (\d+)", detail.inner_text()).group(1))
    assert toy_caption(row) == "red square"  # the best hit of an exact-caption query has that caption
    for text in ("Caption: red square", "best query", "image_path", f"{row:04d}.png", "url", "synthworld://pool",
                 "Queries that hit it (1)", "1.000"):  # fmt: skip
        expect(detail).to_contain_text(text)
    page.locator("#react-more").click()
    similar = page.locator("#react-similar")
    expect(similar).to_contain_text(f"More like this: pool row {row}")
    expect(similar.locator(".thumbnail-item")).to_have_count(K)
    shot(page, "02-result-and-more-like-this")

    name = f"browser-test-{os.getpid()}"
    exported = EXPORTS / f"{name}.parquet"
    try:
        page.locator("#react-export-name textarea").fill(name)
        page.locator("#react-export").click()
        expect(status).to_contain_text(re.compile(rf"Exported {2 * K} rows, \d+ distinct pairs"))
        link = page.locator("#react-export-file a")  # offered as a download
        expect(link).to_have_attribute("href", re.compile(rf"/{re.escape(name)}\.parquet$"))
        downloaded = httpx.get(link.get_attribute("href"), timeout=10)
        assert downloaded.status_code == 200 and downloaded.content == exported.read_bytes()
        table = pq.read_table(exported)
        assert table.num_rows == 2 * K
        assert table.column("class").to_pylist() == ["red square"] * K + ["blue circle"] * K
        for column in ("key", "image_path", "caption", "url", "id", "rank", "query", "similarity", "hits"):
            assert column in table.column_names
        shot(page, "03-exported")
    finally:
        exported.unlink(missing_ok=True)


def test_bad_input_is_explained_and_the_app_keeps_serving(app, page):
    status = page.locator("#react-status")
    choose_index(page, f"{app.index.name} ({POOL_SIZE} pairs, 32-d)")
    page.locator("#react-classes textarea").fill(" , ")
    page.locator("#react-run").click()
    expect(status).to_contain_text("the class list is empty")
    page.locator("#react-templates").get_by_label("file").check()
    page.locator("#react-classes textarea").fill("red square")
    page.locator("#react-run").click()
    expect(status).to_contain_text("needs a template file")
    page.locator("#react-export-name textarea").fill("../outside")
    page.locator("#react-export").click()
    expect(status).to_contain_text("run a retrieval first")
    shot(page, "04-bad-input")
    page.locator("#react-templates").get_by_label("simple").check()
    page.locator("#react-run").click()
    expect(status).to_contain_text("1 classes x 7 templates (simple) = 7 prompts", timeout=60_000)
    expect(page.locator("#react-gallery-0")).to_contain_text("red square:")
