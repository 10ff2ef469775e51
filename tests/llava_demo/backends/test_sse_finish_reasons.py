"""Finish reasons from OpenAI-compatible servers mapped to ours (``sse.parse_chunk``)."""

from __future__ import annotations

import json

import pytest

from llava_demo.backends.sse import parse_chunk


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [("stop", "stop"), ("length", "length"), ("eos", "stop"), ("abort", "cancelled"), ("tool_calls", "stop")],
)
def test_finish_reason_mapping(theirs: str, ours: str) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": theirs}]}
    info = parse_chunk(json.dumps(chunk), source="test")
    assert (info.text, info.finish_reason) == ("x", ours)


def test_no_finish_reason_is_none() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
    assert parse_chunk(json.dumps(chunk), source="test").finish_reason is None
