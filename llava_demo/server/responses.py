"""OpenAI / SGLang response shapes: the non-stream ``chat.completion`` body and the SSE chunk sequence.

Streaming order per request (serving.md §3): a first chunk with ``delta: {"role": "assistant", "content": ""}``,
content deltas, a chunk with ``finish_reason`` and an empty delta, then (with
``stream_options.include_usage``) a chunk with ``"choices": []`` and ``usage``, then ``data: [DONE]``.
An error after the stream started is sent as ``data: {"error": {...}}`` followed by ``[DONE]``.

Extension: user-visible notices (an animated GIF reduced to its first frame, old turns dropped to fit the
context) ride along as a top-level ``"notices": [...]`` list on the response or on the next chunk. OpenAI
clients keep unknown fields (``chunk.model_extra``) and ignore them otherwise.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llava_demo.backends.base import FinishReason, Usage
from llava_demo.server.errors import ApiError

DONE_EVENT = b"data: [DONE]\n\n"
# Our "cancelled" is SGLang's "abort" (the request was stopped before the model finished).
_FINISH_REASONS: dict[str, str] = {"stop": "stop", "length": "length", "cancelled": "abort"}


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def openai_finish_reason(reason: FinishReason | None) -> str:
    return _FINISH_REASONS.get(reason or "stop", "stop")


def usage_body(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        # image_tokens: the AnyRes placeholders inside prompt_tokens (our addition to OpenAI's details).
        "prompt_tokens_details": {"cached_tokens": 0, "image_tokens": usage.image_tokens},
    }


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event. Compact JSON: a 1-token delta is ~200 bytes instead of ~260."""
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: FinishReason | None,
    usage: Usage | None,
    notices: Sequence[str] = (),
) -> dict[str, Any]:
    """The non-stream ``chat.completion`` object."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": openai_finish_reason(finish_reason),
            }
        ],
        "usage": usage_body(usage),
    }
    if notices:
        body["notices"] = list(notices)
    return body


@dataclass
class ChunkWriter:
    """Renders the chunks of one streamed completion; holds the shared id/created/model and the notices
    that still have to be delivered with the next chunk."""

    model: str
    include_usage: bool = False
    completion_id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    pending_notices: list[str] = field(default_factory=list)

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        payload: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            # OpenAI: with include_usage every chunk has "usage": null except the final usage chunk.
            payload["usage"] = None
        if self.pending_notices:
            payload["notices"] = self.pending_notices
            self.pending_notices = []
        return sse(payload)

    def add_notice(self, text: str) -> None:
        self.pending_notices.append(text)

    def role(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""}, None)

    def content(self, text: str) -> bytes:
        return self._chunk({"content": text}, None)

    def finish(self, reason: FinishReason | None) -> bytes:
        return self._chunk({}, openai_finish_reason(reason))

    def usage(self, usage: Usage | None) -> bytes:
        payload = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_body(usage),
        }
        return sse(payload)

    def error(self, error: ApiError) -> bytes:
        return sse(error.stream_body())
