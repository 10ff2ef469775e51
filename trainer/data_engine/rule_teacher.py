"""The rule teacher: offline, deterministic-by-seed stand-in for GPT-4 in LLaVA's data pipeline.

It reads only the scene graph (objects, attributes, positions, relations, counts, sign text) and the captions,
so everything it says is true of the image; descriptions never mention an object that is not annotated.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from trainer.data_engine.instructions import DETAIL_INSTRUCTIONS, pick_instruction
from trainer.data_engine.rule_conversation import make_conversation
from trainer.data_engine.rule_phrases import (
    appearance,
    area_fraction,
    capitalize,
    choose,
    join_words,
    noun_phrase,
    number_word,
    object_inventory,
    percent,
    reference,
    relation_phrase,
    where,
)
from trainer.data_engine.rule_reasoning import make_reasoning
from trainer.data_engine.teachers import (
    Conversation,
    DroppedReply,
    ResponseType,
    TeacherContext,
    TeacherOutput,
    Turn,
)
from trainer.synthworld.concepts import plural
from trainer.synthworld.questions import SceneObject, SceneView
from trainer.synthworld.spatial import clear_relation

# A paragraph about more objects than this turns into a list; the inventory sentence still counts them all.
MAX_DESCRIBED_OBJECTS = 8
MAX_DESCRIBED_RELATIONS = 2
_VERBS = ("is", "sits", "can be seen", "appears")


def _reading_order(scene: SceneView) -> list[SceneObject]:
    # Top-to-bottom in thirds, then left-to-right: the order a person scans a picture in.
    return sorted(scene.objects, key=lambda o: (int(3 * o.center[1] / scene.height), o.center[0]))


def _object_sentence(obj: SceneObject, scene: SceneView, rng: random.Random) -> str:
    sentence = f"{capitalize(noun_phrase(obj))} {choose(rng, _VERBS)} {where(obj, scene)}."
    if obj.species:
        sentence += f" Its markings identify it as a {obj.species}."
    return sentence


def _object_sentences(scene: SceneView, rng: random.Random) -> list[str]:
    """One sentence per distinct-looking object; look-alikes (e.g. COCO's many people) share one sentence."""
    groups: dict[str, list[SceneObject]] = {}
    for obj in _reading_order(scene):
        groups.setdefault(noun_phrase(obj), []).append(obj)
    sentences = []
    for members in list(groups.values())[:MAX_DESCRIBED_OBJECTS]:
        if len(members) == 1:
            sentences.append(_object_sentence(members[0], scene, rng))
            continue
        places = list(dict.fromkeys(where(obj, scene) for obj in members))
        noun = plural(appearance(members[0]))
        if len(places) == len(members):
            sentences.append(
                f"There are {number_word(len(members))} {noun}, "
                + join_words([f"one {p}" for p in places])
                + "."
            )
        else:
            sentences.append(
                f"{capitalize(number_word(len(members)))} {noun} can be seen {join_words(places)}."
            )
    return sentences


def _relation_sentences(scene: SceneView, rng: random.Random) -> list[str]:
    sentences: list[str] = []
    # Only referable objects can be related in words; computing references once keeps big COCO scenes fast.
    named = [(obj, ref) for obj in scene.objects if (ref := reference(scene, obj)) is not None]
    rng.shuffle(named)
    for i, (a, ref_a) in enumerate(named):
        for b, ref_b in named[i + 1 :]:
            word = clear_relation(a, b)
            if word:
                sentences.append(f"{capitalize(ref_a)} is {relation_phrase(word)} {ref_b}.")
            if len(sentences) == MAX_DESCRIBED_RELATIONS:
                return sentences
    return sentences


def describe_scene(context: TeacherContext, rng: random.Random) -> str | None:
    """A multi-sentence description: a caption, the inventory, each object with its place, relations, sizes."""
    scene = context.scene
    sentences: list[str] = []
    if context.captions:
        caption = context.captions[rng.randrange(len(context.captions))].strip().rstrip(".")
        sentences.append(f"{capitalize(caption)}.")
    if not scene.objects:
        return " ".join(sentences) or None
    count = len(scene.objects)
    noun = "object" if count == 1 else "objects"
    opener = choose(rng, ("In total the image holds", "Altogether there are", "The scene contains"))
    sentences.append(f"{opener} {number_word(count)} {noun}: {object_inventory(scene)}.")
    sentences += _object_sentences(scene, rng)
    sentences += _relation_sentences(scene, rng)
    if count >= 2:
        biggest = max(scene.objects, key=lambda obj: area_fraction(obj, scene))
        name = reference(scene, biggest) or noun_phrase(biggest)
        sentences.append(
            f"The largest of them is {name}, covering {percent(area_fraction(biggest, scene))} of the image."
        )
    return " ".join(sentences)


class RuleTeacher:
    """Implements :class:`~trainer.data_engine.teachers.Teacher` from annotations alone; no network, seeded."""

    name = "rule"

    def generate(self, context: TeacherContext, kinds: Sequence[ResponseType]) -> TeacherOutput:
        conversations: list[Conversation] = []
        dropped: list[DroppedReply] = []
        for kind in kinds:
            rng = context.rng(kind)
            if kind is ResponseType.CONVERSATION:
                turns = make_conversation(context, rng)
                made = Conversation(kind, tuple(turns)) if turns else None
            elif kind is ResponseType.DETAIL:
                instruction = pick_instruction(DETAIL_INSTRUCTIONS, rng)
                description = describe_scene(context, rng)
                made = Conversation(kind, (Turn(instruction, description),)) if description else None
            else:
                turn = make_reasoning(context.scene, rng)
                made = Conversation(kind, (turn,)) if turn else None
            if made is None:
                dropped.append(DroppedReply(kind, "scene has nothing to say for this type"))
            else:
                conversations.append(made)
        return TeacherOutput(tuple(conversations), tuple(dropped))
