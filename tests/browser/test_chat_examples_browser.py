"""The committed chat model's own examples, asked through the chat UI in a real browser (``python app.py`` with
its defaults: the embedded model and the examples written beside it), greedy.

Each example's answer in the page must equal the answer the same backend gives in-process to the same image and
question (the UI adds nothing and loses nothing on the way), the examples must cover every question category
plus a yes/no probe, and the number answered right is written to test-artifacts/chat-examples/answers.json
and checked against the floor below. Screenshots go to the same folder.
"""

from __future__ import annotations

import json
import re

import pytest

from llava_demo.backends.base import SamplingParams
from llava_demo.ui.examples import EXAMPLE_LOCATIONS
from tests.browser.browser_support import ROOT, app_page, require_playwright, running_app, set_chat_parameter
from vision_common.chat.conversation import Conversation, Message

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "test-artifacts" / "chat-examples"
EXAMPLES = EXAMPLE_LOCATIONS[0]  # written by the LLaVA recipe beside the embedded model
CATEGORIES = {"color", "shape", "count", "position", "text", "yes_no"}
# Issue #18's target is 5 of 6. The committed model answers fewer (docs/recipe.md, "The drill"); the floor is
# what it measured, so that a model or UI change that loses right answers fails here.
MIN_RIGHT = 2

sync_api = require_playwright()
expect = sync_api.expect


def normalised(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    if not EXAMPLES.is_file():
        pytest.fail(f"{EXAMPLES} is missing: the LLaVA recipe writes it beside the embedded model")
    return json.loads(EXAMPLES.read_text())


@pytest.fixture(scope="module")
def direct_answers(examples) -> list[str]:
    from llava_demo.backends.local import LocalBackend, LocalBackendConfig

    with LocalBackend.load(str(EXAMPLES.parent.parent), LocalBackendConfig()) as backend:
        return [
            backend.complete(
                Conversation((Message("user", e["question"], (str(EXAMPLES.parent / e["image"]),)),)),
                SamplingParams(temperature=0.0, max_new_tokens=16),
            ).text
            for e in examples
        ]


def test_the_committed_examples_answer_in_the_ui_as_in_process(tmp_path, browser, examples, direct_answers):
    assert {e["category"] for e in examples} == CATEGORIES
    args = ["--device", "cpu", "--feedback-log", ""]
    answers = []
    with running_app(tmp_path, args) as (url, _log), app_page(browser, url, ARTIFACTS) as page:
        page.locator("#chat-input textarea").wait_for()
        set_chat_parameter(page, "chat-temperature", 0)
        set_chat_parameter(page, "chat-max-tokens", 16)
        status = page.locator("#chat-status")
        for index, example in enumerate(examples):
            page.locator("#chat-clear").click()
            expect(status).to_contain_text("New conversation")
            first_line = example["question"].splitlines()[0]
            page.get_by_text(first_line).first.click()  # fills the input with the example's scene + question
            expect(page.locator("#chat-input textarea")).to_have_value(example["question"])
            page.locator("#chat-input textarea").press("Enter")
            expect(status).to_contain_text("finish_reason", timeout=60_000)
            answers.append(page.get_by_test_id("bot").last.inner_text().strip())
            page.screenshot(
                path=str(ARTIFACTS / f"example-{index}-{example['category']}.png"), full_page=True
            )
    right = [normalised(a) == normalised(e["answer"]) for a, e in zip(answers, examples)]
    report = [
        {**e, "ui_answer": a, "direct_answer": d, "right": r}
        for e, a, d, r in zip(examples, answers, direct_answers, right)
    ]
    (ARTIFACTS / "answers.json").write_text(json.dumps(report, indent=1))
    assert [normalised(a) for a in answers] == [normalised(d) for d in direct_answers], report
    assert sum(right) >= MIN_RIGHT, report
