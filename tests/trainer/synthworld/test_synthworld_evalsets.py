"""Eval sets, web pool and small-detail legibility of a generated tiny world, checked against its annotations
with an independent reference resolver (written here, not borrowed from the generator)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from trainer.synthworld.captions import unsupported_words
from trainer.synthworld.concepts import COLORS, SHAPES, SIGN, SPECIES_BY_NAME, plural
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.legibility import ILLEGIBLE_CONTRAST, LEGIBLE_CONTRAST, read_sign
from trainer.synthworld.scene_view import SceneObject
from trainer.synthworld.scenes import sample_scene
from vision_common.chat import format_prompts

TINY = WorldConfig.preset("tiny")
PLURAL_TO_CATEGORY = {plural(c): c for c in (*SHAPES, SIGN)}
CATEGORY_WORDS = {c: c for c in (*SHAPES, SIGN)} | PLURAL_TO_CATEGORY


@pytest.fixture(scope="module")
def scenes(tiny_world: Path) -> dict[str, dict]:
    """image path -> {"image": COCO image, "objects": [annotation dicts with a "category" name]}."""
    coco = json.loads((tiny_world / "scenes/annotations/instances_test.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out = {f"scenes/images/test/{im['file_name']}": {"image": im, "objects": []} for im in coco["images"]}
    by_id = {im["id"]: f"scenes/images/test/{im['file_name']}" for im in coco["images"]}
    for ann in coco["annotations"]:
        out[by_id[ann["image_id"]]]["objects"].append({**ann, "category": names[ann["category_id"]]})
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cell(obj: dict, image: dict) -> tuple[int, int]:
    x, y, w, h = obj["bbox"]
    return min(2, int(3 * (y + h / 2) / image["height"])), min(2, int(3 * (x + w / 2) / image["width"]))


def _cell_name(row: int, col: int) -> str:
    return " ".join(w for w in (("top", "", "bottom")[row], ("left", "", "right")[col]) if w) or "center"


_REGION = {
    "in the center": lambda r, c: (r, c) == (1, 1),
    "on the left": lambda r, c: c == 0,
    "on the right": lambda r, c: c == 2,
    "at the top": lambda r, c: r == 0,
    "at the bottom": lambda r, c: r == 2,
    "in the top left": lambda r, c: (r, c) == (0, 0),
    "in the top right": lambda r, c: (r, c) == (0, 2),
    "in the bottom left": lambda r, c: (r, c) == (2, 0),
    "in the bottom right": lambda r, c: (r, c) == (2, 2),
}
_REF = re.compile(r"^the (?:(\w+) )?(\w+)(?: ((?:in|on|at) the [a-z ]+))?$")


def resolve(ref: str, scene: dict) -> dict:
    """The single object ``ref`` describes; fails the test if it fits none or several."""
    match = _REF.match(ref)
    assert match, ref
    adjective, noun, region = match.groups()
    found = []
    for obj in scene["objects"]:
        attributes = obj["attributes"]
        if noun != "object" and obj["category"] != noun:
            continue
        if adjective and adjective not in (attributes["color"], attributes["pattern"]):
            continue
        if region and not _REGION[region](*_cell(obj, scene["image"])):
            continue
        found.append(obj)
    assert len(found) == 1, (ref, len(found))
    return found[0]


def check_answer(question: str, answer: str, scene: dict) -> None:
    objects = scene["objects"]
    if m := re.fullmatch(r"What color is (.+)\?", question):
        obj = resolve(m[1], scene)
        assert obj["attributes"]["species"] is None and answer == obj["attributes"]["color"]
    elif m := re.fullmatch(r"What shape is (.+)\?", question):
        assert answer == resolve(m[1], scene)["category"] and answer in SHAPES
    elif m := re.fullmatch(r"Where is (.+) relative to (.+)\?", question):
        a, b = resolve(m[1], scene), resolve(m[2], scene)
        (ax, ay, aw, ah), (bx, by, bw, bh) = a["bbox"], b["bbox"]
        truth = {
            "left of": ax + aw <= bx,
            "right of": bx + bw <= ax,
            "above": ay + ah <= by,
            "below": by + bh <= ay,
        }
        assert truth[answer] and sum(truth.values()) == 1, question
    elif m := re.fullmatch(r"Where is (.+) in the image\?", question):
        assert answer == _cell_name(*_cell(resolve(m[1], scene), scene["image"]))
    elif m := re.fullmatch(r"What is written on (.+)\?", question):
        assert answer == resolve(m[1], scene)["attributes"]["text"]
    elif m := re.fullmatch(r"How many (\w+) objects are there in the image\?", question):
        assert int(answer) == sum(o["attributes"]["color"] == m[1] for o in objects) > 0
    elif m := re.fullmatch(r"How many ([\w ]+) are there in the image\?", question):
        assert int(answer) == sum(o["category"] == PLURAL_TO_CATEGORY[m[1]] for o in objects) > 0
    else:
        raise AssertionError(f"unexpected question form: {question}")


def test_vqa_answers_match_annotations(tiny_world: Path, scenes: dict) -> None:
    records = _jsonl(tiny_world / "eval/vqa.jsonl")
    assert len(records) > 60
    assert {r["category"] for r in records} == {"color", "shape", "count", "position", "text"}
    assert [r["question_id"] for r in records] == list(range(len(records)))
    for record in records:
        assert record["text"] == f"{record['question']}\n{format_prompts.SHORT_ANSWER}"
        assert (tiny_world / record["image"]).is_file()
        check_answer(record["question"], record["answer"], scenes[record["image"]])


def test_multiple_choice_letter_points_at_the_right_option(tiny_world: Path, scenes: dict) -> None:
    records = _jsonl(tiny_world / "eval/mc.jsonl")
    assert len(records) >= 40
    letters = Counter()
    for record in records:
        options = record["options"]
        assert len(options) == 4 and len(set(options)) == 4
        assert options["ABCD".index(record["answer"])] == record["answer_text"]
        expected_text = (
            record["question"] + "\n" + "".join(f"{letter}. {o}\n" for letter, o in zip("ABCD", options))
        )
        assert record["text"] == expected_text + format_prompts.MULTIPLE_CHOICE
        check_answer(record["question"], record["answer_text"], scenes[record["image"]])
        letters[record["answer"]] += 1
    assert len(letters) == 4 and max(letters.values()) < 0.5 * len(records)


def test_pope_negatives_absent_and_every_split_balanced(tiny_world: Path, scenes: dict) -> None:
    records = _jsonl(tiny_world / "eval/pope.jsonl")
    tally: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for record in records:
        name = re.fullmatch(r"Is there an? (\w+) in the image\?", record["question"])[1]
        present = name in {o["category"] for o in scenes[record["image"]]["objects"]}
        assert present == (record["answer"] == "yes"), record
        tally[(record["image"], record["category"])][record["answer"]] += 1
    assert {kind for _, kind in tally} == {"random", "popular", "adversarial"}
    for counts in tally.values():
        assert counts["yes"] == counts["no"] > 0
    assert len(records) >= 6 * len(scenes)


def test_detail_questions_only_on_large_scenes(tiny_world: Path, scenes: dict) -> None:
    records = _jsonl(tiny_world / "eval/detail.jsonl")
    assert any(r["category"] == "text" for r in records)
    for record in records:
        scene = scenes[record["image"]]
        assert scene["image"]["large_scene"]
        check_answer(record["question"], record["answer"], scene)


def test_small_detail_glyphs_survive_at_128_but_not_64(tiny_world: Path, scenes: dict) -> None:
    """Every sign asked about in eval/detail.jsonl (plus more LARGE scenes for statistics) keeps its strokes
    when the image is downscaled to 128 px and loses them at 64 px (criterion: trainer/synthworld/legibility)."""
    signs = []
    for record in _jsonl(tiny_world / "eval/detail.jsonl"):
        if record["category"] == "text":
            obj = next(
                o for o in scenes[record["image"]]["objects"] if o["attributes"]["text"] == record["answer"]
            )
            signs.append((Image.open(tiny_world / record["image"]), tuple(obj["bbox"]), record["answer"]))
    assert signs
    for index in range(25):
        spec = sample_scene(random.Random(1000 + index), TINY, True)
        image = spec.render()
        signs += [(image, o.bbox, o.text) for o in spec.objects if o.text]
    readings = {target: [] for target in (64, 128)}
    for image, bbox, text in signs:
        for target in readings:
            readings[target] += read_sign(image, bbox, text, TINY.large_glyph_scale, target)
    glyphs = len(readings[128])
    contrast = {t: sum(r.contrast for r in rs) / glyphs for t, rs in readings.items()}
    accuracy = {t: sum(r.read_as == r.char for r in rs) / glyphs for t, rs in readings.items()}
    assert glyphs > 80
    assert contrast[128] >= LEGIBLE_CONTRAST and accuracy[128] >= 0.9, (contrast, accuracy)
    assert contrast[64] <= ILLEGIBLE_CONTRAST, contrast
    assert sum(r.contrast >= LEGIBLE_CONTRAST for r in readings[64]) <= 0.05 * glyphs
    assert accuracy[64] < accuracy[128] - 0.3
    # At the source resolution the reader is perfect: the criterion measures downscaling, not the font.
    full = [r for image, bbox, text in signs[:10] for r in read_sign(image, bbox, text, 2, max(image.size))]
    assert all(r.read_as == r.char and r.contrast > 0.9 for r in full)


def test_captions_files_are_clean(tiny_world: Path) -> None:
    for split in ("train", "test"):
        coco = json.loads((tiny_world / f"scenes/annotations/instances_{split}.json").read_text())
        caps = json.loads((tiny_world / f"scenes/annotations/captions_{split}.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        objects: dict[int, list] = defaultdict(list)
        for ann in coco["annotations"]:
            a = ann["attributes"]
            objects[ann["image_id"]].append(
                SceneObject(
                    names[ann["category_id"]],
                    tuple(ann["bbox"]),
                    a["color"],
                    species=a["species"],
                    text=a["text"],
                )
            )
        per_image = Counter(c["image_id"] for c in caps["annotations"])
        assert set(per_image.values()) == {5} and len(per_image) == len(coco["images"])
        for caption in caps["annotations"]:
            assert unsupported_words(caption["caption"], objects[caption["image_id"]]) == [], caption


def test_pool_captions_are_noisy_but_never_name_absent_objects(tiny_world: Path) -> None:
    pool = pq.read_table(tiny_world / "pool/pool.parquet").to_pylist()
    truth = pq.read_table(tiny_world / "pool/pool_truth.parquet").to_pylist()
    assert [r["key"] for r in pool] == [t["key"] for t in truth]
    lengths = [len(r["caption"].split()) for r in pool]
    assert min(lengths) == 1 and max(lengths) <= 30 and max(lengths) >= 15
    assert sum(t["mismatched"] for t in truth) == round(600 * TINY.pool_mismatch_rate)
    repeats = Counter(r["caption"] for r in pool)
    assert any(n > 1 for n in repeats.values())  # exact duplicates across different images
    assert (
        sum(any(j in r["caption"] for j in ("stock vector", "free png download", "IMG_")) for r in pool) > 30
    )
    named = species_images = 0
    for row, t in zip(pool, truth):
        objects = [
            SceneObject(o["category"], tuple(o["bbox"]), o["color"], species=o["species"], text=o["text"])
            for o in json.loads(t["objects"])
        ]
        if t["mismatched"]:
            continue
        assert unsupported_words(row["caption"], objects) == [], row["caption"]
        main = objects[0]
        if main.species:
            species_images += 1
            named += main.species in row["caption"].split()
    assert species_images >= 40 and 0.4 <= named / species_images <= 0.8, (named, species_images)


def test_pool_species_frequencies_follow_the_manifest_rank(tiny_world: Path) -> None:
    manifest = json.loads((tiny_world / "manifest.json").read_text())
    truth = pq.read_table(tiny_world / "pool/pool_truth.parquet").to_pylist()
    main_species = Counter(json.loads(t["objects"])[0]["species"] for t in truth)
    counts = [main_species[name] for name in manifest["species_by_pool_frequency"]]
    assert counts == sorted(counts, reverse=True) and counts[0] >= 10 * max(1, counts[-1])
    assert set(manifest["species_by_pool_frequency"]) == set(SPECIES_BY_NAME)


def test_tasks_files(tiny_world: Path) -> None:
    for task, n_classes in (("shapes", 10), ("colors", 10), ("species", 24)):
        classes = (tiny_world / f"tasks/{task}/classes.txt").read_text().splitlines()
        assert len(classes) == n_classes and all(re.fullmatch(r"[a-z]+", c) for c in classes)
        records = _jsonl(tiny_world / f"tasks/{task}/test.jsonl")
        assert Counter(r["label"] for r in records) == {i: 8 for i in range(n_classes)}
        for record in records:
            assert classes[record["label"]] == record["class"]
            assert (tiny_world / f"tasks/{task}" / record["image"]).is_file()
    assert (tiny_world / "tasks/colors/classes.txt").read_text().splitlines() == list(COLORS)
