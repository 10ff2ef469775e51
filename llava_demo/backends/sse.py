"""Server-sent events and OpenAI ``chat.completion.chunk`` objects, parsed as pure functions.

The stream of an OpenAI-compatible server (serving.md §3) is ``data: {json}`` events: a first chunk with the
assistant role, content deltas, a chunk carrying ``finish_reason``, with ``stream_options.include_usage`` a
chunk with ``"choices": []`` and ``usage``, then ``data: [DONE]``. A failure in the middle arrives as
``data: {"error": {...}}``, so ``error`` is checked before ``choices``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from llava_demo.backends.base import BackendError, FinishReason, Usage

DONE_SENTINEL = "[DONE]"
# OpenAI/vLLM/SGLang finish reasons mapped to ours; anything else (tool_calls, content_filter) ends normally.
# SGLang's "abort" (a request stopped through /abort_request or by the server, without an error status) is
# an unfinished answer, like our "cancelled" (which our server sends as "abort").
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "eos": "stop",
    "abort": "cancelled",
}


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """Yield the ``data`` payload of each event (several ``data:`` lines joined by newlines).

    Comments (``:`` lines, used as keep-alives) and other fields (``event:``, ``id:``, ``retry:``) are
    skipped; an event still open when the lines end is delivered too (some servers omit the final blank).
    """
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


@dataclass(frozen=True)
class ChunkInfo:
    """What one chunk says: new text, a finish reason, usage (each may be absent)."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


def error_message(error: Any) -> str:
    """The human part of an OpenAI-style error value (``{"message": ..., "type": ..., "code": ...}``)."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or json.dumps(error)
        kind = error.get("type") or error.get("code")
        return f"{message} ({kind})" if kind and str(kind) not in str(message) else str(message)
    return str(error)


def parse_usage(usage: Any) -> Usage | None:
    """OpenAI usage -> ``Usage``; ``prompt_tokens_details.image_tokens`` is read where a server reports it."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    image_tokens = details.get("image_tokens") if isinstance(details, dict) else None
    try:
        prompt = int(usage.get("prompt_tokens") or 0)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=int(usage.get("completion_tokens") or 0),
            image_tokens=min(int(image_tokens or 0), prompt),
        )
    except (TypeError, ValueError):
        return None


def parse_chunk(payload: str, *, source: str) -> ChunkInfo:
    """Interpret one ``data:`` payload (not ``[DONE]``); a server error becomes ``BackendError``."""
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise BackendError(f"{source} sent a stream chunk that is not JSON: {payload[:120]!r}") from exc
    if not isinstance(chunk, dict):
        raise BackendError(f"{source} sent a stream chunk that is not a JSON object: {payload[:120]!r}")
    if "error" in chunk and chunk["error"]:
        raise BackendError(f"{source} reported an error mid-stream: {error_message(chunk['error'])}")
    usage = parse_usage(chunk.get("usage"))
    choices = chunk.get("choices") or []  # the usage chunk has "choices": []
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ChunkInfo(usage=usage)
    choice = choices[0]
    delta = choice.get("delta") or {}
    text = delta.get("content") if isinstance(delta, dict) else None
    reason = choice.get("finish_reason")
    finish = _FINISH_REASONS.get(reason, "stop") if reason else None
    return ChunkInfo(text=text if isinstance(text, str) else "", finish_reason=finish, usage=usage)
