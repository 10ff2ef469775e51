"""Issue 19, defect 6 of the issue (answer hygiene): answers never start with whitespace (local backend, remote
backend, so the CLI, the API and the app alike); the backend's notices go to the status line, not into the
answer bubble; "More like this" does not list the item itself; the export says rows and distinct pairs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llava_demo.backends import local as local_module
from llava_demo.backends.answer_text import LeadingWhitespaceTrimmer
from llava_demo.backends.base import SamplingParams, Usage
from llava_demo.backends.factory import make_backend
from llava_demo.backends.local import LocalBackendConfig
from llava_demo.ui import chat_state as cs
from llava_demo.ui.generations import Outcome
from react_explorer.ui.explorer_actions import ExportResult
from react_explorer.ui.explorer_handlers import export_status
from tests.support.tiny_llava import build_tiny_llava
from vision_common.chat.conversation import Conversation

NOTICE = "max_new_tokens lowered from 512 to 40: the prompt uses 2008 of the model's 2048-token context"


@given(st.lists(st.text(alphabet=" \n\tab", max_size=5), max_size=8))
def test_the_trimmer_drops_only_the_leading_whitespace(chunks):
    trimmer = LeadingWhitespaceTrimmer()
    assert "".join(trimmer.feed(chunk) for chunk in chunks) == "".join(chunks).lstrip()


class _SpaceFirstStreamer(local_module.TextIteratorStreamer):
    """A SentencePiece tokenizer decodes the first answer token as " Word": the streamer's first text."""

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if not getattr(self, "_sent_first", False) and text:
            self._sent_first = True
            text = "  " + text.lstrip()
        super().on_finalized_text(text, stream_end)


@pytest.mark.slow
def test_local_answers_do_not_start_with_a_space(tmp_path, monkeypatch):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    torch.set_num_threads(1)
    monkeypatch.setattr(local_module, "TextIteratorStreamer", _SpaceFirstStreamer)
    checkpoint = build_tiny_llava(tmp_path / "tiny", suppress_eos=True)
    backend = make_backend("local", str(checkpoint), **vars(LocalBackendConfig.tiny()))
    try:
        conversation = Conversation().with_user("Describe it.")
        events = list(backend.stream(conversation, SamplingParams.tiny(max_new_tokens=8)))
    finally:
        backend.close()
    deltas = [event.text for event in events if event.kind == "delta"]
    answer = "".join(deltas)
    assert answer and not answer[0].isspace(), repr(answer)


def _outcome(**overrides) -> Outcome:
    values = dict(text="A red square.", finish_reason="stop", usage=Usage(2040, 4, 0), notices=(NOTICE,),
                  error=None, error_code=None, seconds=1.5, first_token_s=0.2)  # fmt: skip
    values.update(overrides)
    return Outcome(**values)


def test_backend_notices_go_to_the_status_line_not_the_bubble():
    outcome = _outcome()
    assert "max_new_tokens" not in cs.answer_note(outcome)
    assert cs.answer_note(outcome) == ""
    status = cs.outcome_status(outcome)
    assert status.startswith("Answered: finish_reason `stop`, 4 tokens") and f"Note: {NOTICE}." in status
    assert cs.answer_note(_outcome(finish_reason="length")) == "cut at the max-new-tokens limit (4 tokens)"
    assert f"Note: {NOTICE}." in cs.outcome_status(_outcome(finish_reason="cancelled"))


def test_export_status_says_rows_and_distinct_pairs(tmp_path):
    path = Path(tmp_path / "subset.parquet")
    shared = export_status(ExportResult(path, rows=249, dropped_missing=0, distinct_pairs=248))
    assert shared.startswith("Exported 249 rows, 248 distinct pairs (a pair retrieved for several classes")
    one = export_status(ExportResult(path, rows=1, dropped_missing=2, distinct_pairs=1))
    assert one.startswith("Exported 1 row, 1 distinct pair, to") and "2 rows left out" in one
