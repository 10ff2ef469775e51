"""Parse and validate teacher replies. Pure functions; a bad reply raises :class:`MalformedReply` with a reason.

Conversation and complex-reasoning replies are alternating ``Question:`` / ``Answer:`` blocks (a block may span
several lines; markdown bold around the label is tolerated). Detail replies are plain text.
"""

from __future__ import annotations

import re

from trainer.data_engine.schema import IMAGE_TAG
from trainer.data_engine.teachers import Turn


class MalformedReply(ValueError):
    """The reply cannot be used as training data; the message is the reason counted in the run's stats."""


_LABEL = re.compile(
    r"^\s*(?:[-*#>]\s*)*\**\s*(question|answer|q|a)\s*\d*\s*\**\s*[:：]\s*\**\s*", re.IGNORECASE
)

# Openings and phrases that mark a refusal or a model talking about itself instead of the image.
_REFUSAL = re.compile(
    r"^\s*(i'?m sorry|sorry|i apologi[sz]e|i cannot|i can'?t|i am unable|i'?m unable|unfortunately)"
    r"|as an ai\b|as a language model|i do not have the ability to see|i can'?t see (the|this) image",
    re.IGNORECASE,
)

_MIN_DETAIL_WORDS = 8


def check_text(text: str, what: str) -> str:
    """Strip and reject empty text, refusals and stray image tags (they would corrupt the record)."""
    cleaned = text.strip()
    if not cleaned:
        raise MalformedReply(f"empty {what}")
    if _REFUSAL.search(cleaned):
        raise MalformedReply(f"refusal in {what}")
    if IMAGE_TAG in cleaned:
        raise MalformedReply(f"{IMAGE_TAG} tag in {what}")
    return cleaned


def parse_qa_blocks(text: str) -> list[Turn]:
    """Split ``Question: ... Answer: ...`` blocks into turns; raise on bad alternation or empty parts."""
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _LABEL.match(line)
        if match:
            role = "question" if match.group(1).lower().startswith("q") else "answer"
            blocks.append((role, [line[match.end() :]]))
        elif blocks:
            blocks[-1][1].append(line)
        elif line.strip():
            raise MalformedReply("text before the first 'Question:'")
    if not blocks:
        raise MalformedReply("no 'Question:'/'Answer:' blocks")
    turns: list[Turn] = []
    for index in range(0, len(blocks), 2):
        pair = blocks[index : index + 2]
        if pair[0][0] != "question":
            raise MalformedReply(f"block {index + 1} should be a question but is an answer")
        if len(pair) < 2:
            raise MalformedReply("last question has no answer")
        if pair[1][0] != "answer":
            raise MalformedReply(f"block {index + 2} should be an answer but is a question")
        question = check_text("\n".join(pair[0][1]), f"question {index // 2 + 1}")
        answer = check_text("\n".join(pair[1][1]), f"answer {index // 2 + 1}")
        turns.append(Turn(question=question, answer=answer))
    return turns


def parse_conversation(text: str) -> list[Turn]:
    return parse_qa_blocks(text)


def parse_complex(text: str) -> Turn:
    turns = parse_qa_blocks(text)
    if len(turns) != 1:
        raise MalformedReply(f"complex reasoning needs exactly one question, got {len(turns)}")
    return turns[0]


def parse_detail(text: str) -> str:
    description = check_text(text, "description")
    if _LABEL.match(description):
        raise MalformedReply("description is formatted as Question/Answer blocks")
    if len(description.split()) < _MIN_DETAIL_WORDS:
        raise MalformedReply(f"description shorter than {_MIN_DETAIL_WORDS} words")
    return description
