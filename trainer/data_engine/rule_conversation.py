"""Multi-turn conversations from the scene graph (the rule teacher's ``conversation`` type).

Facts come from the questions module (every short-answer question there has one right answer) and are
re-phrased as natural questions with full-sentence answers; counts, relations, an inventory question and
yes/no existence questions are added so a conversation mixes several kinds of turns.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable

from trainer.data_engine.rule_phrases import (
    capitalize,
    choose,
    noun_phrase,
    number_word,
    object_inventory,
    reference,
    relation_phrase,
    where,
)
from trainer.data_engine.teachers import TeacherContext, Turn
from trainer.synthworld.concepts import plural, with_article
from trainer.synthworld.questions import QA, SceneView, short_answer_questions
from trainer.synthworld.spatial import clear_relation

MIN_TURNS, MAX_TURNS = 3, 5
MAX_COUNTABLE = 10  # beyond this people miscount, so no count question is asked

_POSITION_PHRASES = {"center": "in the center", "left": "on the left", "right": "on the right"}


def _position_phrase(cell: str) -> str:
    if cell in _POSITION_PHRASES:
        return _POSITION_PHRASES[cell]
    return f"at the {cell}" if cell in ("top", "bottom") else f"in the {cell}"


def _color_turn(ref: str, answer: str, rng: random.Random) -> Turn:
    question = choose(
        rng, (f"What color is {ref}?", f"Which color does {ref} have?", f"What is the color of {ref}?")
    )
    return Turn(question, choose(rng, (f"{capitalize(ref)} is {answer}.", f"It is {answer}.")))


def _shape_turn(ref: str, answer: str, rng: random.Random) -> Turn:
    question = choose(rng, (f"What shape is {ref}?", f"What kind of shape is {ref}?"))
    return Turn(question, f"{capitalize(ref)} is {with_article(answer)}.")


def _position_turn(ref: str, answer: str, rng: random.Random) -> Turn:
    question = choose(
        rng, (f"Where is {ref} in the image?", f"Where can {ref} be found?", f"Where is {ref}?")
    )
    return Turn(question, f"{capitalize(ref)} is {_position_phrase(answer)} of the image.")


def _text_turn(ref: str, answer: str, rng: random.Random) -> Turn:
    question = choose(rng, (f"What is written on {ref}?", f"What does {ref} say?", f"Can you read {ref}?"))
    return Turn(question, choose(rng, (f"{capitalize(ref)} reads {answer}.", f"It says {answer}.")))


# Patterns of the questions module's phrasing -> our re-phrasing. A question we cannot parse is skipped.
_REPHRASERS: tuple[tuple[re.Pattern[str], Callable[[str, str, random.Random], Turn]], ...] = (
    (re.compile(r"^What color is (.+)\?$"), _color_turn),
    (re.compile(r"^What shape is (.+)\?$"), _shape_turn),
    (re.compile(r"^Where is (.+) in the image\?$"), _position_turn),
    (re.compile(r"^What is written on (.+)\?$"), _text_turn),
)


def rephrase(qa: QA, rng: random.Random) -> Turn | None:
    for pattern, make in _REPHRASERS:
        match = pattern.match(qa.question)
        if match:
            return make(match.group(1), qa.answer, rng)
    return None


def attribute_turns(scene: SceneView, rng: random.Random) -> list[Turn]:
    turns = [rephrase(qa, rng) for qa in short_answer_questions(scene, rng) if qa.category != "count"]
    return [turn for turn in turns if turn is not None]


def count_turns(scene: SceneView, rng: random.Random) -> list[Turn]:
    counts = Counter(obj.category for obj in scene.objects)
    crowded = {obj.category for obj in scene.objects if obj.crowd}
    turns = []
    for category, count in sorted(counts.items()):
        if category in crowded or count > MAX_COUNTABLE:
            continue
        noun = plural(category)
        question = choose(
            rng, (f"How many {noun} are there?", f"How many {noun} can you see in the picture?")
        )
        if count == 1:
            answer = f"There is just one {category}."
        else:
            answer = choose(rng, (f"There are {number_word(count)} {noun}.", f"I can see {count} {noun}."))
        turns.append(Turn(question, answer))
    return turns


def relation_turns(scene: SceneView, rng: random.Random) -> list[Turn]:
    refs = {id(obj): reference(scene, obj) for obj in scene.objects}
    turns = []
    for i, first in enumerate(scene.objects):
        for second in scene.objects[i + 1 :]:
            # One question per pair, in a random direction: "A left of B" and "B right of A" say the same.
            a, b = (first, second) if rng.random() < 0.5 else (second, first)
            word = clear_relation(a, b)
            ref_a, ref_b = refs[id(a)], refs[id(b)]
            if word is None or ref_a is None or ref_b is None:
                continue
            if word in ("left of", "right of"):
                question = f"Is {ref_a} to the left or to the right of {ref_b}?"
            else:
                question = choose(
                    rng, (f"Where is {ref_a} relative to {ref_b}?", f"Is {ref_a} above or below {ref_b}?")
                )
            turns.append(Turn(question, f"{capitalize(ref_a)} is {relation_phrase(word)} {ref_b}."))
    return turns


def overview_turns(context: TeacherContext, rng: random.Random) -> list[Turn]:
    scene = context.scene
    if scene.objects:
        question = choose(
            rng,
            (
                "What objects can you see in this image?",
                "What is in this picture?",
                "What does the image contain?",
            ),
        )
        return [
            Turn(
                question,
                f"{choose(rng, ('I can see', 'The image contains', 'The picture shows'))} {object_inventory(scene)}.",
            )
        ]
    if context.captions:
        caption = context.captions[rng.randrange(len(context.captions))].rstrip(".")
        return [Turn("What is happening in this image?", f"{caption}.")]
    return []


def existence_turns(context: TeacherContext, rng: random.Random) -> list[Turn]:
    """One yes and one no question, the no about a dataset category that is absent (a hallucination guard)."""
    scene = context.scene
    turns = []
    if scene.objects:
        obj = scene.objects[rng.randrange(len(scene.objects))]
        answer = f"Yes, there is {noun_phrase(obj)} {where(obj, scene)}."
        turns.append(Turn(f"Is there {with_article(obj.category)} in the image?", answer))
    absent = sorted(set(context.vocabulary) - {obj.category for obj in scene.objects})
    if absent:
        name = absent[rng.randrange(len(absent))]
        turns.append(
            Turn(f"Is there {with_article(name)} in the image?", f"No, there is no {name} in this image.")
        )
    return turns


def make_conversation(context: TeacherContext, rng: random.Random) -> list[Turn]:
    """3-5 turns drawn round-robin from the fact sources so one kind of question never dominates."""
    scene = context.scene
    sources = [
        attribute_turns(scene, rng),
        count_turns(scene, rng),
        relation_turns(scene, rng),
        existence_turns(context, rng),
    ]
    for source in sources:
        rng.shuffle(source)
    sources = [source for source in sources if source]
    rng.shuffle(sources)
    overview = overview_turns(context, rng)
    target = rng.randint(MIN_TURNS, MAX_TURNS)
    chosen: list[Turn] = overview[:1] if overview and rng.random() < 0.6 else []
    while len(chosen) < target and any(sources):
        for source in sources:
            if source and len(chosen) < target:
                chosen.append(source.pop())
    if not chosen:
        chosen = overview[:1]
    # Two identical questions in one conversation would teach nothing new.
    unique: dict[str, Turn] = {}
    for turn in chosen:
        unique.setdefault(turn.question, turn)
    return list(unique.values())
