"""Character bounds on a chat request's text, checked before anything is tokenized (issue 19: a 50 MB prompt
once cost 198 s, 11 GB and a 17 s ``/health`` before its context-length 400).

Two checks, both cheap and independent of the model:

* ``refuse_text_only_body``: before JSON parsing, a body that carries no image part and is so large that it
  must hold more characters than allowed is refused from its length alone. One JSON-escaped character takes at
  most ``MAX_BYTES_PER_CHAR`` bytes (a surrogate pair written ``\\ud83d\\ude00``), so such a body cannot fit.
* ``check_text_bounds``: after parsing, the characters of each message and of the whole request.

The cost of refusing therefore grows with the body only as far as reading it (already capped by
``--max-request-bytes``) and one substring search, done chunk by chunk while it arrives
(``llava_demo.server.body``), so no single step of the event loop grows with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava_demo.server.errors import ApiError
from llava_demo.server.requests import ChatRequest

MAX_BYTES_PER_CHAR = 12  # "\ud83d\ude00": one character (code point) as twelve bytes of JSON
JSON_OVERHEAD_BYTES = 64 * 1024  # keys, roles, sampling fields around the text
IMAGE_PART_MARKER = b"image_url"
CODE = "context_length_exceeded"  # what OpenAI clients already handle for a prompt that is too long


@dataclass(frozen=True)
class TextBounds:
    """``max_request_chars``: all text of one request; ``max_message_chars``: one message's text."""

    max_request_chars: int
    max_message_chars: int

    def __post_init__(self) -> None:
        for name in ("max_request_chars", "max_message_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.max_message_chars > self.max_request_chars:
            raise ValueError(
                f"max_message_chars ({self.max_message_chars:,}) must not exceed "
                f"max_request_chars ({self.max_request_chars:,})"
            )

    @property
    def text_only_body_limit(self) -> int:
        """Bytes beyond which a body without image parts must exceed ``max_request_chars``."""
        return MAX_BYTES_PER_CHAR * self.max_request_chars + JSON_OVERHEAD_BYTES


def refuse_text_only_body(body: bytes, bounds: TextBounds) -> None:
    """400 for a body without image parts that is too long to hold an allowed amount of text."""
    refuse_text_only_size(len(body), IMAGE_PART_MARKER in body, bounds)


def refuse_text_only_size(size: int, mentions_images: bool, bounds: TextBounds) -> None:
    """``refuse_text_only_body`` from the body's size and whether ``IMAGE_PART_MARKER`` occurs in it, both
    known while it was read (``llava_demo.server.body``), so the body itself is not touched again."""
    if size > bounds.text_only_body_limit and not mentions_images:
        raise ApiError(
            400,
            f"the request has no images and its {size:,}-byte body is longer than any request of at most "
            f"{bounds.max_request_chars:,} text characters can be (--max-request-chars); send less text",
            code=CODE,
            param="messages",
        )


def check_text_bounds(request: ChatRequest, bounds: TextBounds) -> None:
    """400 naming the first message over ``max_message_chars``, or the request over ``max_request_chars``."""
    total = 0
    for number, message in enumerate(request.messages):
        size = len(message.text)
        if size > bounds.max_message_chars:
            raise ApiError(
                400,
                f"message {number} ({message.role}) has {size:,} characters of text; this server accepts at "
                f"most {bounds.max_message_chars:,} per message (--max-message-chars)",
                code=CODE,
                param=f"messages[{number}].content",
            )
        total += size
    if total > bounds.max_request_chars:
        raise ApiError(
            400,
            f"the messages hold {total:,} characters of text; this server accepts at most "
            f"{bounds.max_request_chars:,} per request (--max-request-chars)",
            code=CODE,
            param="messages",
        )
