"""LLaVA record schema: construction is exact, and every malformed case is rejected naming id and field."""

from __future__ import annotations

import copy

import pytest

from trainer.data_engine.schema import RecordError, make_record, validate_record, validate_records


def _good() -> dict:
    return {
        "id": "rec-1",
        "image": "a/b.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"},
            {"from": "gpt", "value": "A star."},
            {"from": "human", "value": "What color?"},
            {"from": "gpt", "value": "Red."},
        ],
    }


def test_make_record_puts_image_tag_only_at_start_of_first_turn() -> None:
    record = make_record("7_conversation", "x.png", [("Q1", "A1"), ("Q2", "A2")])
    assert record == {
        "id": "7_conversation",
        "image": "x.png",
        "conversations": [
            {"from": "human", "value": "<image>\nQ1"},
            {"from": "gpt", "value": "A1"},
            {"from": "human", "value": "Q2"},
            {"from": "gpt", "value": "A2"},
        ],
    }
    text_only = make_record("t", None, [("Hi", "Hello")])
    assert text_only == {
        "id": "t",
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
    }
    validate_record(_good())


def _drop_gpt(r: dict) -> None:
    r["conversations"] = r["conversations"][:1]


def _swap_first(r: dict) -> None:
    r["conversations"][0]["from"] = "gpt"


def _two_humans(r: dict) -> None:
    r["conversations"][1]["from"] = "human"


def _tag_without_image(r: dict) -> None:
    del r["image"]


def _tag_in_later_turn(r: dict) -> None:
    r["conversations"][2]["value"] = "<image>\nAnd now?"


def _tag_not_at_start(r: dict) -> None:
    r["conversations"][0]["value"] = "What is this?\n<image>"


def _empty_value(r: dict) -> None:
    r["conversations"][3]["value"] = "   "


def _bad_speaker(r: dict) -> None:
    r["conversations"][1]["from"] = "assistant"


def _empty_image(r: dict) -> None:
    r["image"] = ""


def _tag_twice(r: dict) -> None:
    r["conversations"][0]["value"] = "<image>\n<image> twice"


def _no_text_after_tag(r: dict) -> None:
    r["conversations"][0]["value"] = "<image>\n "


def _no_conversations(r: dict) -> None:
    r["conversations"] = []


def _turn_not_object(r: dict) -> None:
    r["conversations"][1] = "A star."


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_drop_gpt, "ends with a human turn"),
        (_swap_first, "conversations[0].from"),
        (_two_humans, "conversations[1].from"),
        (_tag_without_image, "has no 'image'"),
        (_tag_in_later_turn, "conversations[2].value"),
        (_tag_not_at_start, "must start with '<image>\\n'"),
        (_empty_value, "conversations[3].value must be a non-empty string"),
        (_bad_speaker, "must be 'human' or 'gpt'"),
        (_empty_image, "field 'image'"),
        (_tag_twice, "2 times"),
        (_no_text_after_tag, "no instruction text"),
        (_no_conversations, "field 'conversations'"),
        (_turn_not_object, "conversations[1] must be an object"),
    ],
)
def test_validator_rejects_each_malformed_case_naming_the_record(mutate, expected: str) -> None:
    record = copy.deepcopy(_good())
    mutate(record)
    with pytest.raises(RecordError) as info:
        validate_record(record)
    assert "'rec-1'" in str(info.value)
    assert expected in str(info.value)


def test_missing_id_is_named_by_index_and_duplicates_are_rejected() -> None:
    anonymous = _good()
    del anonymous["id"]
    with pytest.raises(RecordError, match=r"record #1: field 'id'"):
        validate_records([_good(), anonymous])
    with pytest.raises(RecordError, match=r"record 'rec-1': field 'id' is duplicated"):
        validate_records([_good(), _good()])
    with pytest.raises(RecordError, match="expected a JSON object"):
        validate_records(["not a record"])
    assert validate_records([_good()]) == 1
