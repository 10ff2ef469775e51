"""The answer as the user reads it: without the whitespace a tokenizer puts before the first word.

SentencePiece-style tokenizers decode the first generated token of an answer as " The" (the word-start marker
becomes a space), so every answer from the CLI, the API and the app began with a space (issue 19). Streaming
makes this a small state machine: whitespace is dropped until the first visible character, then everything
passes unchanged (inner and trailing whitespace is part of the answer).
"""

from __future__ import annotations


class LeadingWhitespaceTrimmer:
    """Feed streamed text chunks; get them back without the answer's leading whitespace."""

    def __init__(self) -> None:
        self.started = False

    def feed(self, chunk: str) -> str:
        if self.started or not chunk:
            return chunk
        trimmed = chunk.lstrip()
        self.started = bool(trimmed)
        return trimmed
