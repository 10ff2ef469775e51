"""Evaluation sets in LLaVA eval JSONL form, built from the TEST scenes' COCO annotations.

* vqa:    short-answer questions (color/shape/count/position/text); text ends with "\\n" + SHORT_ANSWER.
* pope:   balanced yes/no object probes in the random/popular/adversarial splits, statistics from TRAIN.
* mc:     multiple choice; the answer is the option letter.
* detail: small-detail questions on LARGE scenes only (sign codes at glyph scale 2, colours of tiny objects):
          answerable from a 128-px view, not from a 64-px one.
Image paths are relative to the world's root directory.
"""

from __future__ import annotations

import random
from collections import Counter
from itertools import combinations
from typing import Any

from trainer.synthworld.concepts import CATEGORIES
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.questions import (
    detail_questions,
    multiple_choice_questions,
    short_answer_questions,
    yes_no_probes,
)
from trainer.synthworld.sampling import item_seed
from trainer.synthworld.scene_view import views_from_coco
from vision_common.chat import format_prompts

# A "tiny" object for colour detail questions: at most this fraction of the scene's shorter side, i.e. about
# 2 px after downscaling a 256-320 px scene to 64 px, but 4-5 px at 128 px.
DETAIL_OBJECT_FRACTION = 0.045
EVAL_SETS: tuple[str, ...] = ("vqa", "pope", "mc", "detail")


def scene_statistics(coco: dict[str, Any]) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Per-category image counts (popularity) and per-pair image co-occurrence counts (pairs sorted by name)."""
    names = {category["id"]: category["name"] for category in coco["categories"]}
    per_image: dict[int, set[str]] = {}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    popularity: Counter[str] = Counter()
    cooccurrence: Counter[tuple[str, str]] = Counter()
    for present in per_image.values():
        popularity.update(present)
        cooccurrence.update(combinations(sorted(present), 2))
    return dict(popularity), dict(cooccurrence)


def _sample_per_category(qas: list, limit: int, rng: random.Random) -> list:
    by_category: dict[str, list] = {}
    for qa in qas:
        by_category.setdefault(qa.category, []).append(qa)
    picked = []
    for category in sorted(by_category):
        group = by_category[category]
        picked += rng.sample(group, min(limit, len(group)))
    return picked


def build_eval_sets(
    test_coco: dict[str, Any],
    image_dir: str,
    popularity: dict[str, int],
    cooccurrence: dict[tuple[str, str], int],
    config: WorldConfig,
    seed: int,
) -> dict[str, list[dict[str, Any]]]:
    """All four eval sets as lists of JSON records. ``image_dir`` is the test images' folder relative to the
    world root (e.g. "scenes/images/test")."""
    sets: dict[str, list[dict[str, Any]]] = {name: [] for name in EVAL_SETS}

    def add(name: str, image: dict[str, Any], record: dict[str, Any]) -> None:
        base = {"question_id": len(sets[name]), "image": f"{image_dir}/{image['file_name']}"}
        sets[name].append({**base, **record, "image_id": image["id"]})

    for image, view in views_from_coco(test_coco):
        rng = random.Random(item_seed(seed, "eval", int(image["id"])))
        for qa in _sample_per_category(
            short_answer_questions(view, rng), config.vqa_per_category_per_image, rng
        ):
            text = f"{qa.question}\n{format_prompts.SHORT_ANSWER}"
            add(
                "vqa",
                image,
                {"text": text, "question": qa.question, "answer": qa.answer, "category": qa.category},
            )
        probes = yes_no_probes(view, rng, CATEGORIES, popularity, cooccurrence, config.pope_per_kind)
        for qa in probes:
            text = f"{qa.question}\n{format_prompts.SHORT_ANSWER}"
            add(
                "pope",
                image,
                {"text": text, "question": qa.question, "answer": qa.answer, "category": qa.category},
            )
        choices = multiple_choice_questions(view, rng)
        for mc in rng.sample(choices, min(config.mc_per_image, len(choices))):
            record = {"text": mc.prompt(), "question": mc.question, "options": list(mc.options)}
            add(
                "mc",
                image,
                {**record, "answer": mc.answer_letter, "answer_text": mc.answer, "category": mc.category},
            )
        if image.get("large_scene"):
            max_side = DETAIL_OBJECT_FRACTION * min(view.width, view.height)
            for qa in detail_questions(view, rng, max_side):
                text = f"{qa.question}\n{format_prompts.SHORT_ANSWER}"
                record = {"text": text, "question": qa.question, "answer": qa.answer, "category": qa.category}
                add("detail", image, record)
    return sets
