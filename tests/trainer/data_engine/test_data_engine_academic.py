"""Academic VQA records (LLaVA-1.5 style): format prompts, true answers, balanced probes, no giveaways, mixes."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tests.support.data_engine_fixtures import write_coco_sample
from trainer.data_engine import BuildConfig, RuleTeacher
from trainer.data_engine.academic import (
    AcademicConfig,
    _leaks,
    _Turn,
    academic_turns,
    probe_statistics,
    stratified,
)
from trainer.data_engine.build import build_records, teacher_context
from trainer.data_engine.cli import main
from trainer.data_engine.coco import load_coco
from trainer.synthworld.questions import QA, SceneObject, SceneView
from vision_common.chat.format_prompts import MULTIPLE_CHOICE, SHORT_ANSWER, YES_NO

FORMAT_LINES = (SHORT_ANSWER, YES_NO, MULTIPLE_CHOICE)


def _synth_records(tmp_path: Path, **config) -> tuple[list[dict], object]:
    captions, instances, images = write_coco_sample(tmp_path, synthworld=True)
    dataset = load_coco(captions, instances, images)
    cfg = BuildConfig(types=("academic",), show_progress=False, **config)
    return build_records(dataset, RuleTeacher(), cfg)


def _pairs(record: dict) -> list[tuple[str, str]]:
    turns = record["conversations"]
    return [(q["value"].removeprefix("<image>\n"), a["value"]) for q, a in zip(turns[0::2], turns[1::2])]


def test_academic_records_are_true_and_carry_exact_format_prompts(tmp_path: Path) -> None:
    records, stats = _synth_records(tmp_path)
    assert stats.records["academic"] == 2 and [r["id"] for r in records] == ["10_academic", "11_academic"]
    # Which questions a record asks is a seeded draw; a few seeds make sure some have a known answer.
    pairs = dict(_pairs(records[0]))
    for seed in (1, 2, 3):
        pairs |= dict(_pairs(_synth_records(tmp_path / str(seed), seed=seed)[0][0]))
    for question, answer in pairs.items():
        assert question.splitlines()[-1] in FORMAT_LINES, question
        if question.endswith(MULTIPLE_CHOICE):
            assert re.fullmatch(r"[A-D]", answer)
        else:
            assert len(answer.split()) <= 3
    # Scene 10 (hand-built): one blue star, one red circle, a green triangle and a sign reading K7.
    expected = {
        "What color is the star?": "blue",
        "What color is the circle?": "red",
        "What is written on the sign?": "K7",
        "How many stars are there in the image?": "1",
    }
    checked = 0
    for question, answer in pairs.items():
        stem = question.split("\n")[0]
        if stem in expected and not question.endswith(MULTIPLE_CHOICE):
            assert answer == expected[stem]
            checked += 1
        if stem.startswith("Is there "):
            present = {"circle", "star", "triangle", "sign"}
            name = stem.removeprefix("Is there ").removesuffix(" in the image?").split(" ", 1)[1]
            assert answer == ("yes" if name in present else "no"), stem
    assert checked >= 1


def test_probes_are_balanced_and_no_names_an_absent_category(tmp_path: Path) -> None:
    probes_only = AcademicConfig(short_turns=0, mc_turns=0, detail_turns=0, probe_record_share=1.0)
    records, _ = _synth_records(tmp_path, academic=probes_only)
    for record in records:
        answers = [a for q, a in _pairs(record)]
        assert answers.count("yes") == answers.count("no") >= 1
        assert set(answers) == {"yes", "no"}


def test_a_packed_record_never_gives_an_answer_away() -> None:
    colour = _Turn(f"What color is the star?\n{SHORT_ANSWER}", "blue", "blue")
    shape = _Turn(f"What shape is the blue object?\n{SHORT_ANSWER}", "star", "star")
    yes_star = _Turn(f"Is there a star in the image?\n{SHORT_ANSWER}", "yes", "star", prefix=True)
    no_ring = _Turn(f"Is there a ring in the image?\n{SHORT_ANSWER}", "no", None, prefix=True)
    count = _Turn(f"How many stars are there in the image?\n{SHORT_ANSWER}", "1", "1")
    assert _leaks(shape, [colour]) and _leaks(colour, [shape])  # each names what the other answers
    assert _leaks(yes_star, [count])  # "stars" says a star is present
    assert _leaks(yes_star, [_Turn("What shape is the object at the top?", "star", "star")])
    assert not _leaks(no_ring, [colour, shape, count])  # an absent object is never mentioned
    assert not _leaks(count, [colour])  # "1" is not in "What color is the star?"
    # Two red objects: an earlier answer "red" does not hide a later, independent "red".
    assert not _leaks(
        _Turn("What color is the circle?", "red", "red"), [_Turn("What color is the ring?", "red", "red")]
    )
    # Across many random scenes' records: no kept turn's answer occurs in an earlier question.
    scene = SceneView(
        192,
        192,
        (
            SceneObject("star", (10, 10, 30, 30), color="blue", pattern="plain"),
            SceneObject("circle", (120, 10, 40, 40), color="red", pattern="striped"),
            SceneObject("square", (60, 120, 40, 40), color="green", pattern="plain"),
        ),
    )
    stats = probe_statistics([scene], ("star", "circle", "square", "ring", "cross"))
    for seed in range(30):
        turns = academic_turns(scene, random.Random(seed), stats, AcademicConfig())
        for index, (_question, answer) in enumerate(turns):
            if answer in ("yes", "no") or len(answer) == 1:
                continue
            earlier = " ".join(q for q, _ in turns[:index]).lower()
            assert re.search(rf"\b{re.escape(answer.lower())}\b", earlier) is None, (seed, turns)


def test_probes_open_half_the_records_and_are_not_position_biased() -> None:
    scene = SceneView(
        192,
        192,
        (
            SceneObject("star", (10, 10, 30, 30), color="blue", pattern="plain"),
            SceneObject("circle", (120, 10, 40, 40), color="red", pattern="striped"),
            SceneObject("square", (60, 120, 40, 40), color="green", pattern="plain"),
        ),
    )
    stats = probe_statistics([scene], ("star", "circle", "square", "ring", "cross", "hexagon"))
    first = {"yes": 0, "no": 0, "other": 0}
    for seed in range(300):
        turns = academic_turns(scene, random.Random(seed), stats, AcademicConfig())
        answers = [a for _, a in turns]
        probes = [a for a in answers if a in ("yes", "no")]
        assert probes.count("yes") == probes.count("no")
        assert (
            answers[: len(probes)] == probes
        )  # a record's probes come first, before anything names an object
        first[answers[0] if answers[0] in ("yes", "no") else "other"] += 1
    # Half the records open with a probe, and an opening probe is "yes" as often as "no" (the first-cut
    # filter kept early "yes" probes and dropped late ones: 60% "yes" at the first turn).
    assert 120 < first["other"] < 180
    assert abs(first["yes"] - first["no"]) < 0.25 * (first["yes"] + first["no"])
    no_probes = AcademicConfig(probe_record_share=0.0)
    assert all(a not in ("yes", "no") for _, a in academic_turns(scene, random.Random(0), stats, no_probes))


def test_probe_statistics_and_stratified_sampling_by_hand() -> None:
    a = SceneView(64, 64, (SceneObject("star", (0, 0, 8, 8)), SceneObject("ring", (20, 20, 8, 8))))
    b = SceneView(64, 64, (SceneObject("star", (0, 0, 8, 8)), SceneObject("star", (30, 30, 8, 8))))
    stats = probe_statistics([a, b], ("star", "ring", "cross"))
    assert stats.popularity == {"star": 2, "ring": 1}
    assert stats.cooccurrence == {("ring", "star"): 1}
    items = [QA(f"count {i}", str(i), "count") for i in range(6)] + [QA("colour", "red", "color")]
    picked = stratified(items, 4, random.Random(0), per_category=2)
    assert len(picked) == 3 and sum(qa.category == "count" for qa in picked) == 2
    assert QA("colour", "red", "color") in picked


def test_fractions_thin_types_reproducibly_and_bad_options_raise(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    dataset = load_coco(captions, instances, images)
    config = BuildConfig(types=("detail", "short"), fractions={"detail": 0.5}, seed=3, show_progress=False)
    records, stats = build_records(dataset, RuleTeacher(), config)
    kept = [r["id"] for r in records if r["id"].endswith("_detail")]
    assert kept == [f"{i}_detail" for i in (1, 2, 3) if config.wants("detail", i)]
    assert stats.records["short"] == 3  # unlisted types: every image
    assert build_records(dataset, RuleTeacher(), config)[0] == records
    drawn = sum(BuildConfig(fractions={"detail": 0.3}).wants("detail", i) for i in range(2000))
    assert 500 < drawn < 700
    with pytest.raises(ValueError, match="not in types"):
        BuildConfig(types=("short",), fractions={"detail": 0.5})
    with pytest.raises(ValueError, match=r"fractions\['detail'\]"):
        BuildConfig(fractions={"detail": 0.0})
    with pytest.raises(ValueError, match="short_per_category"):
        AcademicConfig(short_per_category=0)
    with pytest.raises(ValueError, match="probe_record_share"):
        AcademicConfig(probe_record_share=1.5)
    with pytest.raises(ValueError, match="every turn count is 0"):
        AcademicConfig(short_turns=0, yes_no_pairs=0, detail_turns=0, mc_turns=0)
    assert teacher_context(dataset.images[0], dataset, 0).image_id == 1


def test_cli_builds_a_mix_and_rejects_a_bad_fraction(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    captions, instances, images = write_coco_sample(tmp_path, synthworld=True)
    out = tmp_path / "mix.json"
    base = ["build", "--captions", str(captions), "--instances", str(instances), "--images", str(images)]
    code = main([*base, "--out", str(out), "--types", "detail,academic", "--fractions", "detail=1.0"])
    assert code == 0
    ids = sorted(r["id"] for r in json.loads(out.read_text()))
    assert ids == ["10_academic", "10_detail", "11_academic", "11_detail"]
    assert main([*base, "--out", str(out), "--types", "academic", "--fractions", "detail=0.5"]) == 2
    assert "not in types" in capsys.readouterr().err


def test_drill_repeats_and_category_thinning(tmp_path: Path) -> None:
    """A drill: several seeded records per image, and a short-answer category thinned by ``keep``; the first
    record of each image is the one the default settings build, draw for draw."""
    default, _ = _synth_records(tmp_path / "a")
    drill, stats = _synth_records(tmp_path / "b", academic=AcademicConfig(repeats=3))
    assert [r["id"] for r in drill] == [
        f"{i}_academic{s}" for i in (10, 11) for s in ("", "_1", "_2")
    ] and stats.records["academic"] == 6
    assert [drill[0], drill[3]] == default
    assert len({json.dumps(r["conversations"]) for r in drill[:3]}) > 1  # each repeat draws anew
    no_counts, _ = _synth_records(tmp_path / "c", academic=AcademicConfig(repeats=20, keep={"count": 0.0}))
    # Multiple-choice turns are not short answers and keep their counts.
    asked = [q.split("\n")[0] for r in no_counts for q, _ in _pairs(r) if not q.endswith(MULTIPLE_CHOICE)]
    assert asked and not any(q.startswith("How many") for q in asked)
    with_counts, _ = _synth_records(tmp_path / "d", academic=AcademicConfig(repeats=20))
    assert any(
        q.startswith("How many") and not q.endswith(MULTIPLE_CHOICE)
        for r in with_counts
        for q, _ in _pairs(r)
    )
    with pytest.raises(ValueError, match="keep names 'colour'"):
        AcademicConfig(keep={"colour": 0.5})
    with pytest.raises(ValueError, match=r"keep\['count'\]"):
        AcademicConfig(keep={"count": 1.5})
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        AcademicConfig(repeats=0)
