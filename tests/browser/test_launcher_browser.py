"""Acceptance in a real browser for the training launcher: start a tiny LLaVA stage-2 job from the tab's form
(an empty required field is first refused with the message under that field), watch
its steps and loss arrive, cancel it, restart the app process, find it cancelled with its checkpoint, resume it,
see it finish, then pick its model in the chat tab (Refresh; no app restart) and chat with it once.
Screenshots go to test-artifacts/launcher/."""

from __future__ import annotations

import re

import pytest

from tests.browser.browser_support import ROOT, app_page, require_playwright, running_app
from trainer.data_engine.cli import main as data_engine_main
from trainer.launcher.registry import JobRegistry
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world

ARTIFACTS = ROOT / "test-artifacts" / "launcher"
EMBEDDED = "assets/models/synthworld-llava-next"
STEPS = 40

sync_api = require_playwright()
expect = sync_api.expect
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace holding a tiny world and its instruction data: the job's inputs, as another job would
    have left them there."""
    root = tmp_path_factory.mktemp("launcher-browser")
    world = root / "ws" / "world"
    generate_world(world, WorldConfig.preset("tiny"), seed=0)
    annotations = world / "scenes" / "annotations"
    data = root / "ws" / "instructions.json"
    assert data_engine_main(["build", "--captions", str(annotations / "captions_train.json"), "--instances",
                             str(annotations / "instances_train.json"), "--images",
                             str(world / "scenes" / "images" / "train"), "--out", str(data), "--limit", "12",
                             "--types", "conversation,detail"]) == 0  # fmt: skip
    return root


def app_args(root) -> list[str]:
    return ["--workspace", str(root / "ws"), "--no-preload", "--feedback-log", "", "--device", "cpu"]


def field(page, job_type: str, name: str):
    """The box of a field of the form generated from the job type's dataclass (a text box is a textarea)."""
    return page.locator(f"#launcher-field-{job_type}-{name}").locator("input, textarea").first


def fill_form(page, job_type: str, params: dict) -> None:
    for name, value in params.items():
        field(page, job_type, name).fill(str(value))


def job_row(page):
    return page.locator("#launcher-jobs tbody tr").first


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_start_cancel_restart_resume_then_serve_the_model(workspace, browser):
    ws = workspace / "ws"
    params = {"data": str(ws / "instructions.json"), "images": str(ws / "world/scenes/images/train"),
              "init": EMBEDDED, "max_steps": STEPS}  # fmt: skip
    with (
        running_app(workspace, app_args(workspace)) as (url, _log),
        app_page(browser, url, ARTIFACTS) as page,
    ):
        page.get_by_role("tab", name="Training launcher").click()
        expect(page.locator("#launcher-start")).to_be_visible()
        # The tiny preset's values are in the form; the inputs are not: Start names them in their fields.
        expect(field(page, "llava-stage2", "checkpoint_every")).to_have_value("1")
        page.locator("#launcher-start").click()
        expect(page.locator("#launcher-field-llava-stage2-data")).to_contain_text(
            "⚠ llava-stage2.data is required", timeout=30_000
        )
        expect(page.locator("#launcher-field-llava-stage2-images")).to_contain_text("images is required")
        expect(page.locator("#launcher-status")).to_contain_text("Not started")
        shot(page, "form-errors")
        fill_form(page, "llava-stage2", params)
        page.locator("#launcher-start").click()
        expect(page.locator("#launcher-status")).to_contain_text("Queued", timeout=30_000)
        expect(page.locator("#launcher-field-llava-stage2-data")).not_to_contain_text("is required")
        row = job_row(page)
        expect(row).to_contain_text("llava-stage2")
        # At least two loss points: the step column reads 2/40 or more, with a loss beside it.
        step_cell, loss_cell = row.locator("td").nth(3), row.locator("td").nth(4)
        expect(step_cell).to_have_text(re.compile(rf"^([2-9]|[1-3]\d)/{STEPS}$"), timeout=240_000)
        expect(loss_cell).to_have_text(re.compile(r"^\d+\.\d{4}$"))
        shot(page, "running")
        page.locator("#launcher-cancel").click()
        expect(row).to_contain_text("cancelled", timeout=120_000)
        (job,) = JobRegistry(ws).jobs()
        job_id = job.id
        assert job.state == "cancelled"
        assert (job.params["max_steps"], job.params["checkpoint_every"], job.params["init"]) == (
            STEPS,
            1,
            EMBEDDED,
        )
    checkpoints = sorted((ws / "jobs" / job_id / "run" / "checkpoints").glob("step-*"))
    assert checkpoints, "the cancelled job left no checkpoint"
    with (
        running_app(workspace, app_args(workspace)) as (url, _log),
        app_page(browser, url, ARTIFACTS) as page,
    ):
        page.get_by_role("tab", name="Training launcher").click()
        row = job_row(page)
        expect(row).to_contain_text(job_id)
        expect(row).to_contain_text("cancelled")  # the restarted app kept the job and its state
        expect(page.locator("#launcher-details")).to_contain_text("exit code 143")
        page.locator("#launcher-resume").click()
        expect(row).to_contain_text("succeeded", timeout=300_000)
        expect(row.locator("td").nth(3)).to_have_text(f"{STEPS}/{STEPS}")
        shot(page, "succeeded")
        final = ws / "jobs" / job_id / "run" / "final"
        assert (final / "model.safetensors").is_file()
        # train -> serve: the job's model is in the chat's selector after Refresh, and it answers.
        page.get_by_role("tab", name="Visual chat").click()
        page.locator("#chat-refresh-models").click()
        model = page.locator("#chat-model input")
        model.click()
        option = page.get_by_role("option", name=re.compile(re.escape(job_id)))
        expect(option).to_be_visible(timeout=20_000)
        option.click()
        box = page.locator("#chat-input textarea")
        box.fill("Hello")
        box.press("Enter")
        expect(page.get_by_test_id("bot").last).to_contain_text(re.compile(r"\w"), timeout=120_000)
        shot(page, "served")
