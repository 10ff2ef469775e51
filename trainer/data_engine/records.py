"""Turn generated conversations, questions-module items and captions into LLaVA records.

Record ids are ``<image_id>_<kind>`` (``_mc<k>`` for the k-th multiple-choice item), so they are unique per
dataset and say where each sample came from. Format prompts come from ``vision_common.chat.format_prompts``, the same
strings the eval sets and the app use (LLaVA-1.5 Sec. 4 response-format prompting).
"""

from __future__ import annotations

import random
from typing import Any

from trainer.data_engine.instructions import BRIEF_INSTRUCTIONS, pick_instruction
from trainer.data_engine.schema import make_record
from trainer.data_engine.teachers import Conversation, ResponseType
from trainer.synthworld.questions import SceneView, multiple_choice_questions, short_answer_questions
from vision_common.chat.format_prompts import SHORT_ANSWER

# Record-id suffixes; "complex" is shorter to type than the LLaVA type name and matches the CLI's --types.
KIND_SUFFIX: dict[ResponseType, str] = {
    ResponseType.CONVERSATION: "conversation",
    ResponseType.DETAIL: "detail",
    ResponseType.COMPLEX: "complex",
}


def conversation_record(conversation: Conversation, image_id: int, image: str) -> dict[str, Any]:
    turns = [(turn.question, turn.answer) for turn in conversation.turns]
    return make_record(f"{image_id}_{KIND_SUFFIX[conversation.kind]}", image, turns)


def short_answer_record(
    scene: SceneView, rng: random.Random, image_id: int, image: str, *, max_turns: int
) -> dict[str, Any] | None:
    """All of an image's short-answer questions as one multi-turn record, as LLaVA-1.5 packs VQA data; each
    question carries the single-word format prompt so the model learns when to answer briefly."""
    items = short_answer_questions(scene, rng)
    if not items:
        return None
    rng.shuffle(items)
    turns = [(f"{qa.question}\n{SHORT_ANSWER}", qa.answer) for qa in items[:max_turns]]
    return make_record(f"{image_id}_short", image, turns)


def multiple_choice_records(
    scene: SceneView, rng: random.Random, image_id: int, image: str, *, max_items: int
) -> list[dict[str, Any]]:
    """One single-turn record per item: the prompt (question, lettered options, format line) -> the letter."""
    items = multiple_choice_questions(scene, rng)
    chosen = rng.sample(items, min(max_items, len(items)))
    return [
        make_record(f"{image_id}_mc{index}", image, [(item.prompt(), item.answer_letter)])
        for index, item in enumerate(chosen)
    ]


def caption_record(
    captions: tuple[str, ...], rng: random.Random, image_id: int, image: str
) -> dict[str, Any] | None:
    """Stage-1 (feature alignment) sample: a brief-description instruction and one caption as the answer."""
    if not captions:
        return None
    caption = captions[rng.randrange(len(captions))]
    return make_record(f"{image_id}_caption", image, [(pick_instruction(BRIEF_INSTRUCTIONS, rng), caption)])
