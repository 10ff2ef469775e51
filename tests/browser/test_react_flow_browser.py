"""Acceptance in a real browser for "retrieve -> customize" (issue 17): in the REACT explorer pick a SynthWorld
task, retrieve, export the subset, press "Customize CLIP on this subset"; the launcher tab opens with a
``react-customize`` job prefilled (subset, the task's class names, the embedded tiny CLIP as base, the task to
score, the pool); pick the ``tiny`` preset, Start; the job succeeds and the zero-shot before/after table shows
the numbers of its ``zeroshot.json``; "Re-index the pool with this CLIP" queues an ``index-build`` job on the
customized model.

The world is SynthWorld's ``tiny`` preset (600 pool pairs, 10 shapes x 8 task images) inside the launcher's
workspace, indexed by the committed tiny CLIP before the app starts. Screenshots go to test-artifacts/react-flow/.
"""

from __future__ import annotations

import json
import os

import pytest

from react_explorer.cli.build_index import main as build_main
from tests.browser.browser_support import ROOT, app_page, require_playwright, running_app
from trainer.launcher.react_results import before_after_rows
from trainer.launcher.registry import JobRegistry
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world

ARTIFACTS = ROOT / "test-artifacts" / "react-flow"
EXPORTS = ROOT / "runs" / "react" / "exports"  # the explorer's confined export folder
CLIP = "assets/synthworld/models/synthworld-clip"
TASK = "shapes"
K = 4

sync_api = require_playwright()
expect = sync_api.expect
pytestmark = pytest.mark.slow  # spawns the app and a training job


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace holding a tiny world and its pool's index by the embedded tiny CLIP."""
    root = tmp_path_factory.mktemp("react-flow")
    world = root / "ws" / "world"
    generate_world(world, WorldConfig.preset("tiny"), seed=0)
    index = root / "ws" / "tiny-pool"
    assert build_main(["--pool", str(world / "pool" / "pool.parquet"), "--out", str(index), "--model",
                       f"local-dir:{ROOT / CLIP}", "--workers", "0", "--batch-size", "100",
                       "--no-progress"]) == 0  # fmt: skip
    return root


def app_args(root) -> list[str]:
    ws = root / "ws"
    return ["--workspace", str(ws), "--react-world", str(ws / "world"), "--react-index", str(ws / "tiny-pool"),
            "--no-preload", "--feedback-log", "", "--device", "cpu"]  # fmt: skip


def pick(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"#{elem_id} input")).to_have_value(option)


def field(page, name: str):
    """A field of the react-customize column of the launcher's form (a text box is a textarea)."""
    return page.locator(f"#launcher-field-react-customize-{name}").locator("input, textarea").first


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_export_customize_start_then_the_before_after_table(workspace, browser):
    ws = workspace / "ws"
    name = f"flow-browser-{os.getpid()}"
    exported = EXPORTS / f"{name}.parquet"
    classes = (ws / "world" / "tasks" / TASK / "classes.txt").read_text().split()
    try:
        with (
            running_app(workspace, app_args(workspace)) as (url, _log),
            app_page(browser, url, ARTIFACTS) as page,
        ):
            # Every step waits up to a minute: the machines that run this also train models in the background.
            page.set_default_timeout(60_000)
            page.get_by_role("tab", name="REACT explorer").click()
            pick(page, "react-index", "tiny-pool (600 pairs, 128-d)")
            pick(page, "react-task", TASK)
            expect(page.locator("#react-classes textarea")).to_have_value("\n".join(classes))
            k = page.locator("#react-k input[type=number]")
            k.fill(str(K))
            k.press("Enter")
            page.locator("#react-run").click()
            status = page.locator("#react-status")
            # The first retrieval loads the CLIP into the app process: seconds on a busy 2-core machine.
            expect(status).to_contain_text(f"{len(classes)} classes x 4 templates", timeout=180_000)
            customize = page.locator("#react-customize")
            expect(customize).to_be_hidden()  # nothing exported yet
            page.locator("#react-export-name textarea").fill(name)
            page.locator("#react-export").click()
            expect(status).to_contain_text("Exported")
            customize.click()

            # The launcher tab is selected, with the REACT job prefilled from the export.
            expect(page.locator("#launcher-status")).to_contain_text("Prefilled a react-customize job")
            expect(page.locator("#launcher-type input")).to_have_value("REACT customization of CLIP")
            expect(page.locator("#launcher-preset input")).to_have_value("synthworld")
            # The react-customize column of the form shows the prefilled values (not the preset's defaults).
            expect(page.locator("#launcher-form-react-customize")).to_be_visible()
            prefilled = {"subset": f"runs/react/exports/{name}.parquet", "base": CLIP, "classes": ", ".join(classes),
                         "eval_task": str(ws / "world" / "tasks" / TASK),
                         "pool": str(ws / "world" / "pool" / "pool.parquet"), "config": "synthworld"}  # fmt: skip
            for key, value in prefilled.items():
                expect(field(page, key)).to_have_value(value)
            shot(page, "01-prefilled")
            pick(page, "launcher-preset", "tiny")  # the form follows the preset, keeping the prefill
            expect(field(page, "config")).to_have_value("tiny")
            expect(field(page, "max_steps")).to_have_value("4")  # the tiny preset's
            expect(field(page, "subset")).to_have_value(prefilled["subset"])  # kept
            expect(field(page, "eval_task")).to_have_value(prefilled["eval_task"])  # kept
            page.locator("#launcher-start").click()
            expect(page.locator("#launcher-status")).to_contain_text("Queued")
            row = page.locator("#launcher-jobs tbody tr").first
            expect(row).to_contain_text("react-customize")
            # Import, 4 updates and two zero-shot passes: ~1 minute on 2 idle cores, minutes on loaded ones.
            expect(row).to_contain_text("succeeded", timeout=480_000)

            (job,) = JobRegistry(ws).jobs()
            report = json.loads((ws / job.out_dir / "run" / "zeroshot.json").read_text())
            assert report["classes"] == classes and set(report["before"]) == {TASK}
            rows = before_after_rows(report)  # hand-checked in tests/trainer/launcher/test_launcher_flows.py
            assert [r[:2] for r in rows] == [[TASK, "top-1"], [TASK, "top-5"]]
            table = page.locator("#launcher-zeroshot")
            expect(table).to_be_visible()
            for cells in rows:  # a row's accessible name is its cells: task, metric, before, after, change
                expect(table.get_by_role("row", name=" ".join(cells), exact=True)).to_be_visible()
            shot(page, "02-before-after")

            page.locator("#launcher-reindex").click()
            expect(page.locator("#launcher-status")).to_contain_text("index-build with the CLIP of")
            reindex = next(j for j in JobRegistry(ws).jobs() if j.type == "index-build")
            assert reindex.params["model"] == str(ws / job.out_dir / "run" / "final")
            assert reindex.params["pool"] == str(ws / "world" / "pool" / "pool.parquet")
            shot(page, "03-reindex-queued")
    finally:
        exported.unlink(missing_ok=True)
