"""LLaVA conversation records: build them and validate them.

The format is the one LLaVA's training code reads (``docs/Finetune_Custom_Data.md`` in haotian-liu/LLaVA)::

    {"id": "...", "image": "rel/path.png",
     "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}, ...]}

Rules enforced by :func:`validate_record` (each violation raises :class:`RecordError` naming the record id and
field): turns alternate human/gpt starting with human and ending with gpt; every value is a non-empty string;
a record with an image has ``<image>\\n`` exactly once, at the start of the first human turn; a record without
an image has no ``<image>`` tag at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

IMAGE_TAG = "<image>"
HUMAN = "human"
GPT = "gpt"


class RecordError(ValueError):
    """A conversation record breaks the LLaVA format; the message names the record id and the field."""


def make_record(record_id: str, image: str | None, turns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Build one record from (question, answer) pairs; ``<image>\\n`` is prepended to the first question.

    The record is validated before it is returned, so a builder can never emit a malformed one.
    """
    conversations: list[dict[str, str]] = []
    for index, (question, answer) in enumerate(turns):
        value = f"{IMAGE_TAG}\n{question}" if index == 0 and image is not None else question
        conversations.append({"from": HUMAN, "value": value})
        conversations.append({"from": GPT, "value": answer})
    record: dict[str, Any] = {"id": record_id}
    if image is not None:
        record["image"] = image
    record["conversations"] = conversations
    validate_record(record)
    return record


def _record_label(record: Any, index: int | None) -> str:
    if isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"]:
        return f"record {record['id']!r}"
    return f"record #{index}" if index is not None else "record (no id)"


def validate_record(record: Any, *, index: int | None = None) -> None:
    """Raise :class:`RecordError` if ``record`` is not a well-formed LLaVA conversation record."""
    label = _record_label(record, index)
    if not isinstance(record, dict):
        raise RecordError(f"{label}: expected a JSON object, got {type(record).__name__}")
    record_id = record.get("id")
    if not isinstance(record_id, str) or not record_id.strip():
        raise RecordError(f"{label}: field 'id' must be a non-empty string, got {record_id!r}")
    has_image = "image" in record
    if has_image and (not isinstance(record["image"], str) or not record["image"].strip()):
        raise RecordError(
            f"{label}: field 'image' must be a non-empty relative path, got {record['image']!r}"
        )
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RecordError(f"{label}: field 'conversations' must be a non-empty list")
    for position, turn in enumerate(turns):
        field = f"conversations[{position}]"
        if not isinstance(turn, dict):
            raise RecordError(f"{label}: {field} must be an object with 'from' and 'value'")
        expected = HUMAN if position % 2 == 0 else GPT
        speaker = turn.get("from")
        if speaker not in (HUMAN, GPT):
            raise RecordError(f"{label}: {field}.from must be 'human' or 'gpt', got {speaker!r}")
        if speaker != expected:
            raise RecordError(
                f"{label}: {field}.from is {speaker!r} but turns must alternate human/gpt starting with human"
            )
        value = turn.get("value")
        if not isinstance(value, str) or not value.strip():
            raise RecordError(f"{label}: {field}.value must be a non-empty string")
        _check_image_tag(label, field, value, first_turn=position == 0, has_image=has_image)
    if len(turns) % 2 != 0:
        raise RecordError(f"{label}: field 'conversations' ends with a human turn that has no gpt answer")


def _check_image_tag(label: str, field: str, value: str, *, first_turn: bool, has_image: bool) -> None:
    count = value.count(IMAGE_TAG)
    if not has_image:
        if count:
            raise RecordError(f"{label}: {field}.value contains {IMAGE_TAG!r} but the record has no 'image'")
        return
    if first_turn:
        if not value.startswith(f"{IMAGE_TAG}\n"):
            raise RecordError(
                f"{label}: {field}.value must start with '<image>\\n' (the record has an image)"
            )
        if count != 1:
            raise RecordError(f"{label}: {field}.value contains {IMAGE_TAG!r} {count} times; expected once")
        if not value[len(IMAGE_TAG) + 1 :].strip():
            raise RecordError(f"{label}: {field}.value has an image tag but no instruction text")
    elif count:
        raise RecordError(f"{label}: {field}.value contains {IMAGE_TAG!r}; it belongs only in the first turn")


def validate_records(records: Iterable[Any]) -> int:
    """Validate every record and that ids are unique; return how many there were."""
    seen: set[str] = set()
    count = 0
    for index, record in enumerate(records):
        validate_record(record, index=index)
        if record["id"] in seen:
            raise RecordError(f"record {record['id']!r}: field 'id' is duplicated (second at index {index})")
        seen.add(record["id"])
        count += 1
    return count
