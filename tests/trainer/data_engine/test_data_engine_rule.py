"""Rule teacher end to end: real-COCO and SynthWorld samples -> valid LLaVA JSON with true, varied content."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.data_engine_fixtures import COCO_CAPTIONS, write_coco_sample
from trainer.data_engine import BuildConfig, RuleTeacher, build_instruction_data, build_stage1_data
from trainer.data_engine.build import build_records, teacher_context
from trainer.data_engine.cli import main
from trainer.data_engine.coco import load_coco
from trainer.data_engine.instructions import BRIEF_INSTRUCTIONS, DETAIL_INSTRUCTIONS
from trainer.data_engine.schema import validate_records
from trainer.data_engine.teachers import ResponseType
from trainer.synthworld.concepts import COLOR_NAMES, PATTERNS
from vision_common.chat.format_prompts import MULTIPLE_CHOICE, SHORT_ANSWER

QUIET = BuildConfig(show_progress=False)


def _gpt_text(record: dict) -> str:
    return " ".join(turn["value"] for turn in record["conversations"] if turn["from"] == "gpt")


def _by_id(records: list[dict]) -> dict[str, dict]:
    return {record["id"]: record for record in records}


def test_real_coco_sample_builds_valid_data(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    out = tmp_path / "out" / "llava.json"
    stats = build_instruction_data(captions, instances, images, out, RuleTeacher(), QUIET)
    records = json.loads(out.read_text())
    assert validate_records(records) == len(records) == stats.total_records
    assert stats.images == 3
    by_id = _by_id(records)
    for image_id in (1, 2):
        for kind in ("conversation", "detail", "complex", "short"):
            assert f"{image_id}_{kind}" in by_id
    assert stats.records["conversation"] == 3 and stats.records["detail"] == 3
    # Image paths are relative to --images, exactly as in the COCO file.
    assert by_id["3_detail"]["image"] == "sub/000000000003.jpg"
    assert not any(Path(record["image"]).is_absolute() for record in records)
    # Real COCO has no attributes, so no colour or pattern word may appear in what the teacher says.
    generated = " ".join(_gpt_text(r) for r in records).lower().split()
    assert not set(generated) & (set(COLOR_NAMES) | set(PATTERNS))
    # Counting uses the boxes: image 2 has two people and one dog.
    short = by_id["2_short"]["conversations"]
    pairs = dict(zip([t["value"] for t in short[0::2]], [t["value"] for t in short[1::2]]))
    assert pairs[f"<image>\nHow many people are there in the image?\n{SHORT_ANSWER}"] == "2"
    assert pairs[f"How many dogs are there in the image?\n{SHORT_ANSWER}"] == "1"


def test_detail_descriptions_are_long_and_mention_only_present_objects(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    dataset = load_coco(captions, instances, images)
    records, _ = build_records(dataset, RuleTeacher(), BuildConfig(types=("detail",), show_progress=False))
    vocabulary = set(dataset.category_names.values()) | {"people"}
    words_per_record = []
    for record in records:
        human, gpt = record["conversations"][0]["value"], record["conversations"][1]["value"]
        assert human.removeprefix("<image>\n") in DETAIL_INSTRUCTIONS
        image = next(i for i in dataset.images if record["id"] == f"{i.image_id}_detail")
        present = {a["category_id"] for a in image.annotations}
        allowed = {dataset.category_names[c] for c in present} | ({"people"} if 1 in present else set())
        mentioned = {w for w in re.findall(r"[a-z]+", gpt.lower()) if w in vocabulary}
        # A caption may name a present object differently ("man" for person) but never an absent category.
        assert mentioned <= allowed, (record["id"], mentioned - allowed)
        words_per_record.append(len(gpt.split()))
    assert sum(words_per_record) / len(words_per_record) >= 15
    assert min(words_per_record) >= 12


def test_synthworld_attributes_give_attribute_questions(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path, synthworld=True)
    out = tmp_path / "synth.json"
    config = BuildConfig(max_short_turns=50, show_progress=False)
    build_instruction_data(captions, instances, images, out, RuleTeacher(), config)
    by_id = _by_id(json.loads(out.read_text()))
    turns = by_id["10_short"]["conversations"]
    qa = {turns[i]["value"].removeprefix("<image>\n"): turns[i + 1]["value"] for i in range(0, len(turns), 2)}
    assert all(question.endswith(f"?\n{SHORT_ANSWER}") for question in qa)
    assert [a for q, a in qa.items() if q.startswith("What is written on the sign")] == ["K7"]
    color_answers = {a for q, a in qa.items() if q.startswith("What color is")}
    assert color_answers and color_answers <= {"red", "blue", "green"}
    detail = _gpt_text(by_id["10_detail"])
    for phrase in (
        "large red striped circle",
        "small blue star",
        "medium green checkered triangle",
        "reading K7",
    ):
        assert phrase in detail
    assert "a large red striped circle in the top left" in detail.lower()
    # The two squares of image 11 differ only in colour/pattern: the teacher must tell them apart by those.
    conversation = _gpt_text(by_id["11_conversation"]) + _gpt_text(by_id["11_complex"])
    assert "square" in conversation and ("yellow" in conversation or "purple" in conversation)
    mc = [r for key, r in by_id.items() if key.startswith("10_mc")]
    assert mc
    for record in mc:
        prompt, letter = record["conversations"][0]["value"], record["conversations"][1]["value"]
        assert prompt.endswith(MULTIPLE_CHOICE) and re.fullmatch(r"[A-D]", letter)
        assert f"\n{letter}. " in prompt


def test_output_is_deterministic_by_seed_and_varies_with_it(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path, synthworld=True)
    texts = []
    for seed, name in ((0, "a"), (0, "b"), (1, "c")):
        out = tmp_path / f"{name}.json"
        build_instruction_data(
            captions, instances, images, out, RuleTeacher(), BuildConfig(seed=seed, show_progress=False)
        )
        texts.append(out.read_text())
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]


def test_phrasing_varies_across_images() -> None:
    from trainer.synthworld.questions import SceneObject, SceneView

    scene = SceneView(
        100, 100, (SceneObject("star", (5, 5, 20, 20), color="red", pattern="plain", size="small"),)
    )
    first_questions = set()
    for image_id in range(30):
        context = teacher_context_for(scene, image_id)
        output = RuleTeacher().generate(context, [ResponseType.CONVERSATION, ResponseType.DETAIL])
        first_questions.add(output.conversations[0].turns[0].question)
        first_questions.add(output.conversations[1].turns[0].question)
    assert len(first_questions) >= 8


def teacher_context_for(scene, image_id: int):
    from trainer.data_engine.teachers import TeacherContext

    return TeacherContext(
        image_id, f"{image_id}.png", scene.width, scene.height, ("A red star.",), scene, ("star", "ring")
    )


def test_stage1_pairs_a_brief_instruction_with_one_caption(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    out = tmp_path / "stage1.json"
    stats = build_stage1_data(captions, instances, images, out, seed=3)
    records = json.loads(out.read_text())
    assert stats.records["caption"] == len(records) == 3
    for record in records:
        human, gpt = (turn["value"] for turn in record["conversations"])
        assert human.startswith("<image>\n") and human.removeprefix("<image>\n") in BRIEF_INSTRUCTIONS
        assert gpt in COCO_CAPTIONS[int(record["id"].split("_")[0])]
    assert len(BRIEF_INSTRUCTIONS) >= 10


def test_cli_build_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    out, stage1 = tmp_path / "o.json", tmp_path / "s1.json"
    argv = ["build", "--captions", str(captions), "--instances", str(instances), "--images", str(images),
            "--out", str(out), "--stage1-out", str(stage1), "--types", "detail,short", "--limit", "2"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "detail: 2" in printed and "caption: 2" in printed
    assert {r["id"] for r in json.loads(out.read_text())} == {"1_detail", "1_short", "2_detail", "2_short"}
    assert main(["validate", str(out)]) == 0
    assert "4 valid records" in capsys.readouterr().out
    # Bad input: a clear one-line error naming the file, exit code 2, no traceback, no output.
    instances.write_text("{oops")
    assert main([*argv[:-4], "--out", str(tmp_path / "never.json")]) == 2
    assert "instances.json: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "never.json").exists()
    assert main([*argv[:-2], "--types", "detail,bogus"]) == 2
    assert "unknown type(s) ['bogus']" in capsys.readouterr().err


def test_build_config_validation() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        BuildConfig(types=("short", "short"))
    with pytest.raises(ValueError, match="limit"):
        BuildConfig(limit=0)
    with pytest.raises(ValueError, match="workers"):
        BuildConfig(workers=0)
    assert BuildConfig.tiny().limit == 3


def test_teacher_context_vocabulary_feeds_negative_questions(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    dataset = load_coco(captions, instances, images)
    context = teacher_context(dataset.images[2], dataset, seed=0)
    assert context.vocabulary == ("bicycle", "bus", "car", "chair", "dog", "person")
    answers = []
    for seed in range(10):
        context = teacher_context(dataset.images[2], dataset, seed=seed)
        output = RuleTeacher().generate(context, [ResponseType.CONVERSATION])
        answers += [t.answer for t in output.conversations[0].turns if t.answer.startswith("No, there is no")]
    # Negative existence answers only ever name categories absent from image 3 (which holds one car).
    assert answers and all("car" not in a.split() for a in answers)


def test_every_questions_module_fact_is_rephrased_keeping_its_answer(tmp_path: Path) -> None:
    """Guards the coupling to the questions module's phrasing: a new or changed template must be handled."""
    import random

    from trainer.data_engine.rule_conversation import rephrase
    from trainer.synthworld.questions import short_answer_questions

    captions, instances, images = write_coco_sample(tmp_path, synthworld=True)
    dataset = load_coco(captions, instances, images)
    seen = set()
    for image in dataset.images:
        scene = teacher_context(image, dataset, seed=0).scene
        for qa in short_answer_questions(scene, random.Random(0)):
            if qa.category == "count":
                continue  # counts get their own full-sentence turns
            turn = rephrase(qa, random.Random(1))
            assert turn is not None, qa.question
            assert qa.answer in turn.answer
            seen.add(qa.category)
    assert seen == {"color", "shape", "position", "text"}
