"""Loading the SynthWorld eval sets: validation with clear errors, balanced --limit subsets, the train split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from trainer.llava.eval.data import (
    EvalDataError,
    EvalItem,
    distinct_images,
    load_eval_sets,
    open_eval_image,
    parse_jsonl,
    select_items,
)


def test_test_split_matches_the_files(tiny_world: Path) -> None:
    sets = load_eval_sets(tiny_world)
    assert list(sets) == ["vqa", "pope", "mc", "detail"]
    for name, items in sets.items():
        lines = (tiny_world / "eval" / f"{name}.jsonl").read_text().splitlines()
        assert len(items) == len(lines) > 0
        first = json.loads(lines[0])
        assert (items[0].question_id, items[0].image, items[0].answer) == (
            first["question_id"],
            first["image"],
            first["answer"],
        )
    assert all(len(item.options) >= 2 and item.answer in "ABCD"[: len(item.options)] for item in sets["mc"])
    assert all(item.options == () for item in sets["vqa"])
    assert {item.answer for item in sets["pope"]} == {"yes", "no"}


def test_train_split_is_built_from_train_scenes(tiny_world: Path) -> None:
    sets = load_eval_sets(tiny_world, "train", ("vqa", "pope"))
    assert list(sets) == ["vqa", "pope"]
    assert all(item.image.startswith("scenes/images/train/") for item in sets["vqa"] + sets["pope"])
    assert (tiny_world / sets["vqa"][0].image).is_file()
    test_images = {item.image for item in load_eval_sets(tiny_world, "test", ("vqa",))["vqa"]}
    assert test_images.isdisjoint(item.image for item in sets["vqa"])


def test_missing_world_and_unknown_names_are_clear_errors(tmp_path: Path, tiny_world: Path) -> None:
    with pytest.raises(EvalDataError, match="not a SynthWorld world.*trainer.synthworld generate"):
        load_eval_sets(tmp_path)
    with pytest.raises(EvalDataError, match="unknown eval set"):
        load_eval_sets(tiny_world, names=("vqa", "gqa"))
    with pytest.raises(EvalDataError, match="split must be one of"):
        load_eval_sets(tiny_world, "val")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("set_name", "line", "message"),
    [
        (
            "vqa",
            '{"question_id": 1, "image": "x.png", "text": "Q?", "category": "color"}',
            "line 2: missing field 'answer'",
        ),
        (
            "vqa",
            '{"question_id": "1", "image": "x.png", "text": "Q?", "answer": "r", "category": "c"}',
            "'question_id' must be int",
        ),
        (
            "vqa",
            '{"question_id": 1, "image": "x.png", "text": " ", "answer": "r", "category": "c"}',
            "'text' is empty",
        ),
        (
            "pope",
            '{"question_id": 1, "image": "x.png", "text": "Q?", "answer": "maybe", "category": "random"}',
            "'yes' or 'no'",
        ),
        (
            "mc",
            '{"question_id": 1, "image": "x.png", "text": "Q?", "answer": "E", "category": "c", "options": ["a", "b"]}',
            "one of the option letters 'AB'",
        ),
        (
            "mc",
            '{"question_id": 1, "image": "x.png", "text": "Q?", "answer": "A", "category": "c"}',
            "missing field 'options'",
        ),
        ("vqa", "{not json", "line 2: not valid JSON"),
        ("vqa", "[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_records_name_the_file_line_and_field(set_name: str, line: str, message: str) -> None:
    good = '{"question_id": 0, "image": "x.png", "text": "Q?", "answer": "yes", "category": "random", "options": ["a", "b"]}'
    good = good.replace('"yes"', '"A"') if set_name == "mc" else good
    with pytest.raises(EvalDataError, match=message) as info:
        parse_jsonl(set_name, f"{good}\n{line}\n", "eval/x.jsonl")  # type: ignore[arg-type]
    assert str(info.value).startswith("eval/x.jsonl line 2")


def _items(spec: list[tuple[str, str]], set_name: str = "pope") -> list[EvalItem]:
    return [
        EvalItem(set_name, i, f"img{i // 2}.png", "Q?", answer, cat) for i, (cat, answer) in enumerate(spec)
    ]  # type: ignore[arg-type]


def test_select_items_balances_strata_and_spreads_within_them() -> None:
    # 3 categories x (yes, no), 4 items each = 24 items; limit 12 -> 2 per stratum, evenly spaced (0th, 2nd).
    spec = [
        (cat, ans) for cat in ("random", "popular", "adversarial") for _ in range(4) for ans in ("yes", "no")
    ]
    items = _items(spec)
    chosen = select_items(items, 12)
    assert len(chosen) == 12
    assert Counter((item.category, item.answer) for item in chosen) == {k: 2 for k in set(spec)}
    assert [item.question_id for item in chosen if item.category == "random" and item.answer == "yes"] == [
        0,
        4,
    ]
    assert [item.question_id for item in chosen] == sorted(item.question_id for item in chosen)  # order kept
    assert select_items(items, None) == items
    assert select_items(items, 100) == items
    with pytest.raises(ValueError, match="positive"):
        select_items(items, 0)


def test_select_items_gives_a_small_strata_spare_quota_to_the_others() -> None:
    items = _items([("text", "a")] + [("color", "b")] * 9, set_name="vqa")
    chosen = select_items(items, 5)
    assert Counter(item.category for item in chosen) == {"text": 1, "color": 4}
    # color items are ids 1..9; 4 evenly spaced: positions 0, 2, 4, 6 -> ids 1, 3, 5, 7.
    assert [item.question_id for item in chosen] == [0, 1, 3, 5, 7]


def test_distinct_images_are_evenly_spaced() -> None:
    items = _items([("random", "yes")] * 12)  # images img0..img5, two questions each
    assert distinct_images(items, 3) == ["img0.png", "img2.png", "img4.png"]
    assert distinct_images(items, 10) == [f"img{i}.png" for i in range(6)]


def test_load_image_errors_name_the_question(tmp_path: Path, tiny_world: Path) -> None:
    item = load_eval_sets(tiny_world, names=("vqa",))["vqa"][0]
    image = open_eval_image(tiny_world, item.image, item.where)
    assert image.mode == "RGB" and min(image.size) >= 64
    with pytest.raises(EvalDataError, match="vqa question 7: image .*missing.png does not exist"):
        open_eval_image(tmp_path, "missing.png", "vqa question 7")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(EvalDataError, match="cannot be read"):
        open_eval_image(tmp_path, "broken.png", "vqa question 8")
