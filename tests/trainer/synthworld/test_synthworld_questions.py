"""Questions from hand-built scenes: every answer checked against the annotations by hand."""

from __future__ import annotations

import random
import string

import pytest

from trainer.synthworld.questions import (
    QA,
    MultipleChoice,
    SceneObject,
    SceneView,
    grid_position,
    multiple_choice_questions,
    relation,
    scene_from_coco,
    short_answer_questions,
    yes_no_probes,
)
from vision_common.chat import format_prompts

RED_STAR = SceneObject("star", (10, 10, 30, 30), color="red", pattern="plain")
BLUE_STAR = SceneObject("star", (110, 10, 30, 30), color="blue", pattern="striped")
RED_CIRCLE = SceneObject("circle", (60, 60, 30, 30), color="red", pattern="dotted")
SIGN = SceneObject("sign", (10, 110, 40, 20), text="K7")
SCENE = SceneView(150, 150, (RED_STAR, BLUE_STAR, RED_CIRCLE, SIGN))


def _by_question(qas: list[QA]) -> dict[str, str]:
    return {qa.question: qa.answer for qa in qas}


def test_grid_position_cells_and_relation_axes() -> None:
    assert grid_position((0, 0, 10, 10), 90, 90) == "top left"
    assert grid_position((40, 0, 10, 10), 90, 90) == "top"
    assert grid_position((40, 40, 10, 10), 90, 90) == "center"
    assert grid_position((80, 40, 10, 10), 90, 90) == "right"
    assert grid_position((80, 80, 10, 10), 90, 90) == "bottom right"
    assert relation(RED_STAR, BLUE_STAR) == "left of"
    assert relation(BLUE_STAR, RED_STAR) == "right of"
    assert relation(RED_STAR, SIGN) == "above"
    assert relation(SIGN, RED_STAR) == "below"


def test_short_answers_match_hand_computed_truth() -> None:
    answers = _by_question(short_answer_questions(SCENE, random.Random(0)))
    assert answers["What color is the circle?"] == "red"
    assert answers["How many stars are there in the image?"] == "2"
    assert answers["How many red objects are there in the image?"] == "2"
    assert answers["What is written on the sign?"] == "K7"
    # Two stars: "the star" alone would be ambiguous and must never be used.
    assert not any("the star?" in q or "the star in the image" in q for q in answers)
    for question, answer in answers.items():
        if question.startswith("What color is the star"):
            assert answer == ("red" if "top left" in question else "blue")
        if question.startswith("Where is") and "star" in question:
            assert answer == ("top left" if "red" in question or "plain" in question else "top right")


def test_every_reference_is_unique_across_seeds() -> None:
    for seed in range(20):
        for qa in short_answer_questions(SCENE, random.Random(seed)):
            if qa.category == "shape":
                assert qa.answer == (
                    "circle" if "center" in qa.question or "dotted" in qa.question else "star"
                )


def test_boundary_objects_get_no_position_question() -> None:
    # Centre at x=50 sits on the first third-line of a 150-px image: neither "left" nor "center" is safe.
    scene = SceneView(150, 150, (SceneObject("ring", (40, 60, 20, 30), color="green"),))
    assert not [qa for qa in short_answer_questions(scene, random.Random(0)) if qa.category == "position"]


def test_species_objects_are_not_asked_about_colour_and_block_colour_references() -> None:
    species = SceneObject("star", (10, 10, 30, 30), color="red", pattern="striped", species="vorn")
    plain = SceneObject("circle", (100, 100, 30, 30), color="blue", pattern="plain")
    qas = short_answer_questions(SceneView(150, 150, (species, plain)), random.Random(0))
    assert not [qa for qa in qas if qa.category == "color" and "star" in qa.question]
    # The species' markings may be blue, so "the blue object" is not a unique reference.
    assert not any("blue object" in qa.question for qa in qas)
    assert not any(qa.question.startswith("How many blue") for qa in qas)


def test_real_coco_without_attributes_only_gets_count_and_position() -> None:
    image = {"id": 7, "width": 300, "height": 300, "file_name": "x.jpg"}
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 40, 80], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [200, 10, 40, 80], "iscrowd": 0},
        {"id": 3, "image_id": 7, "category_id": 2, "bbox": [120, 120, 50, 50], "iscrowd": 1},
        {"id": 4, "image_id": 8, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 0},
    ]
    scene = scene_from_coco(image, anns, {1: "person", 2: "dog"})
    assert len(scene.objects) == 3 and scene.objects[0].color is None
    qas = short_answer_questions(scene, random.Random(0))
    assert {qa.category for qa in qas} <= {"count", "position"}
    answers = _by_question(qas)
    assert answers["How many people are there in the image?"] == "2"
    assert not any("dogs" in q for q in answers)  # crowd box: uncountable


def test_scene_from_coco_names_the_bad_record() -> None:
    with pytest.raises(ValueError, match="annotation 5 of image 'a.png'.*category_id"):
        scene_from_coco(
            {"id": 1, "width": 9, "height": 9, "file_name": "a.png"},
            [{"id": 5, "category_id": 99, "bbox": [0, 0, 1, 1]}],
            {1: "star"},
        )
    with pytest.raises(ValueError, match="width"):
        scene_from_coco({"id": 1}, [], {})


def test_multiple_choice_letter_points_at_the_right_option() -> None:
    truth = _by_question(short_answer_questions(SCENE, random.Random(3)))
    mcs = multiple_choice_questions(SCENE, random.Random(3))
    assert {mc.category for mc in mcs} == {"color", "shape", "count", "position", "text"}
    letters = []
    for mc in mcs:
        assert len(mc.options) == 4 and len(set(mc.options)) == 4
        assert mc.options[string.ascii_uppercase.index(mc.answer_letter)] == mc.answer
        if mc.question in truth:
            assert mc.answer == truth[mc.question]
        if "relative to" in mc.question:
            assert mc.answer in ("left of", "right of", "above", "below")
        letters.append(mc.answer_letter)
    assert len(set(letters)) > 1  # the right option is not always in the same place
    assert (
        "Where is the sign relative to the red star?" not in {m.question for m in mcs}
        or next(m.answer for m in mcs if m.question == "Where is the sign relative to the red star?")
        == "below"
    )


def test_multiple_choice_prompt_format() -> None:
    mc = MultipleChoice("What shape?", ("star", "ring"), "B", "shape")
    assert mc.prompt() == "What shape?\nA. star\nB. ring\n" + format_prompts.MULTIPLE_CHOICE
    with pytest.raises(ValueError):
        MultipleChoice("q", ("a", "b"), "C", "shape")


def test_pope_probes_are_balanced_and_negatives_absent() -> None:
    categories = ["circle", "square", "star", "sign", "ring", "cross", "hexagon"]
    popularity = {"ring": 50, "cross": 40, "square": 1, "hexagon": 2}
    cooccurrence = {("star", "hexagon"): 30, ("square", "circle"): 20}
    probes = yes_no_probes(SCENE, random.Random(0), categories, popularity, cooccurrence, n_per_kind=2)
    present = {obj.category for obj in SCENE.objects}
    by_kind: dict[str, list[QA]] = {}
    for qa in probes:
        by_kind.setdefault(qa.category, []).append(qa)
        name = qa.question.removeprefix("Is there a ").removeprefix("n ").removesuffix(" in the image?")
        assert (name in present) == (qa.answer == "yes")
    assert set(by_kind) == {"random", "popular", "adversarial"}
    for qas in by_kind.values():
        assert sum(qa.answer == "yes" for qa in qas) == sum(qa.answer == "no" for qa in qas) == 2
    assert {qa.question for qa in by_kind["popular"] if qa.answer == "no"} == {
        "Is there a ring in the image?",
        "Is there a cross in the image?",
    }
    assert {qa.question for qa in by_kind["adversarial"] if qa.answer == "no"} == {
        "Is there a hexagon in the image?",
        "Is there a square in the image?",
    }
