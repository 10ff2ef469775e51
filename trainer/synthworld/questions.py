"""Questions with one right answer, computed from a scene's annotations alone.

Pure functions over a ``SceneView`` (SynthWorld's own annotations or real COCO's). A question is produced only
when its answer is unambiguous for a person looking at the image:

* an object is referred to only by a description that fits it and nothing else in the scene ("the star" only
  when there is exactly one star; otherwise "the red star", "the striped star" or "the star on the left");
* position words are used only when the object's centre is clearly inside a 3x3 cell (see ``spatial``);
* species objects carry a second palette colour (their markings), so they are never asked about by colour and
  may match any colour when checking that a colour description is unique;
* counts are written as Arabic digits ("3"), only for 1..MAX_COUNT and never for COCO crowd annotations;
* objects without an attribute (real COCO has no colour/pattern/text) simply yield no question about it.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trainer.synthworld.concepts import COLOR_NAMES, SHAPES, SIGN, SIGN_WORDS, plural, with_article
from trainer.synthworld.scene_view import SceneObject, SceneView, scene_from_coco
from trainer.synthworld.spatial import (
    GRID_POSITIONS,
    RELATIONS,
    clear_region,
    clear_relation,
    grid_position,
    may_be_in_region,
    relation,
)
from vision_common.chat import format_prompts

__all__ = [
    "MAX_COUNT",
    "MultipleChoice",
    "POPE_KINDS",
    "QA",
    "QUESTION_CATEGORIES",
    "SceneObject",
    "SceneView",
    "detail_questions",
    "grid_position",
    "multiple_choice_questions",
    "relation",
    "scene_from_coco",
    "short_answer_questions",
    "yes_no_probes",
]

QUESTION_CATEGORIES: tuple[str, ...] = ("color", "shape", "count", "position", "text")
POPE_KINDS: tuple[str, ...] = ("random", "popular", "adversarial")
# Beyond ten, people (and COCO annotators) miscount; such counts are not a fair question.
MAX_COUNT = 10
# Relation questions grow quadratically with objects; a few per scene are plenty.
MAX_RELATIONS_PER_SCENE = 3


@dataclass(frozen=True)
class QA:
    """A question and its answer. ``category`` is one of QUESTION_CATEGORIES, or for yes/no probes the POPE
    split the probe belongs to (one of POPE_KINDS)."""

    question: str
    answer: str
    category: str


@dataclass(frozen=True)
class MultipleChoice:
    question: str
    options: tuple[str, ...]
    answer_letter: str
    category: str

    def __post_init__(self) -> None:
        letters = string.ascii_uppercase[: len(self.options)]
        if len(self.options) < 2 or len(set(self.options)) != len(self.options):
            raise ValueError(f"multiple choice {self.question!r}: needs at least 2 distinct options")
        if len(self.answer_letter) != 1 or self.answer_letter not in letters:
            raise ValueError(
                f"multiple choice {self.question!r}: answer letter {self.answer_letter!r} not in {letters}"
            )

    @property
    def answer(self) -> str:
        return self.options[string.ascii_uppercase.index(self.answer_letter)]

    def prompt(self) -> str:
        lines = "".join(
            f"{letter}. {option}\n" for letter, option in zip(string.ascii_uppercase, self.options)
        )
        return f"{self.question}\n{lines}{format_prompts.MULTIPLE_CHOICE}"


@dataclass(frozen=True)
class _Candidate:
    """A question plus the wrong answers a multiple-choice version may offer."""

    qa: QA
    distractors: tuple[str, ...]
    target: SceneObject | None = None  # the object asked about, for questions about one object


# ---------------------------------------------------------------------------------------------------------
# Referring expressions


def _color_may_match(obj: SceneObject, color: str) -> bool:
    # A species body shows a second palette colour, so a colour word could point at it either way.
    return obj.species is not None or obj.color == color


def _references(scene: SceneView, target: SceneObject, *, avoid: str) -> list[str]:
    """Every description from which a reader can pick out ``target`` and nothing else.

    ``avoid`` names the attribute being asked about ("color", "category", "position"), which must not appear
    in the description, or the question would give its own answer away."""
    others = [obj for obj in scene.objects if obj is not target]
    region = clear_region(target, scene.width, scene.height)
    use_category = avoid != "category"
    noun = target.category if use_category else "object"
    pool = [obj for obj in others if obj.category == target.category] if use_category else others

    def unique(matches: Callable[[SceneObject], bool]) -> bool:
        return not any(matches(obj) for obj in pool)

    refs = []
    if use_category and not pool:
        refs.append(f"the {noun}")
    if avoid != "color" and target.color is not None and target.species is None:
        if unique(lambda obj: _color_may_match(obj, target.color)):
            refs.append(f"the {target.color} {noun}")
    if target.pattern not in (None, "plain") and unique(lambda obj: obj.pattern == target.pattern):
        refs.append(f"the {target.pattern} {noun}")
    if avoid != "position" and region is not None:
        if unique(lambda obj: may_be_in_region(obj, region, scene.width, scene.height)):
            refs.append(f"the {noun} {region.phrase}")
    return refs


def _pick(refs: list[str], rng: random.Random) -> str | None:
    return rng.choice(refs) if refs else None


# ---------------------------------------------------------------------------------------------------------
# Candidates per question category


def _color_candidates(scene: SceneView, rng: random.Random) -> list[_Candidate]:
    out = []
    for obj in scene.objects:
        if obj.color is None or obj.species is not None or obj.category == SIGN:
            continue
        ref = _pick(_references(scene, obj, avoid="color"), rng)
        if ref is not None:
            distractors = tuple(c for c in COLOR_NAMES if c != obj.color)
            out.append(_Candidate(QA(f"What color is {ref}?", obj.color, "color"), distractors, obj))
    return out


def _shape_candidates(scene: SceneView, rng: random.Random) -> list[_Candidate]:
    out = []
    for obj in scene.objects:
        if obj.category not in SHAPES:
            continue
        ref = _pick(_references(scene, obj, avoid="category"), rng)
        if ref is not None:
            distractors = tuple(s for s in SHAPES if s != obj.category)
            out.append(_Candidate(QA(f"What shape is {ref}?", obj.category, "shape"), distractors))
    return out


def _count_distractors(answer: int) -> tuple[str, ...]:
    return tuple(str(n) for n in range(max(0, answer - 4), answer + 5) if n != answer)


def _count_candidates(scene: SceneView) -> list[_Candidate]:
    out = []
    by_category = Counter(obj.category for obj in scene.objects)
    crowded = {obj.category for obj in scene.objects if obj.crowd}
    for category in sorted(by_category):
        count = by_category[category]
        if category in crowded or count > MAX_COUNT:
            continue
        question = f"How many {plural(category)} are there in the image?"
        out.append(_Candidate(QA(question, str(count), "count"), _count_distractors(count)))
    colored = [obj for obj in scene.objects if obj.color is not None]
    if colored and all(obj.species is None for obj in colored):
        by_color = Counter(obj.color for obj in colored)
        for color in sorted(by_color):
            if by_color[color] <= MAX_COUNT:
                question = f"How many {color} objects are there in the image?"
                out.append(
                    _Candidate(
                        QA(question, str(by_color[color]), "count"), _count_distractors(by_color[color])
                    )
                )
    return out


def _position_candidates(scene: SceneView, rng: random.Random) -> list[_Candidate]:
    out = []
    for obj in scene.objects:
        region = clear_region(obj, scene.width, scene.height)
        if region is None:
            continue
        ref = _pick(_references(scene, obj, avoid="position"), rng)
        if ref is not None:
            distractors = tuple(p for p in GRID_POSITIONS if p != region.answer)
            out.append(
                _Candidate(QA(f"Where is {ref} in the image?", region.answer, "position"), distractors)
            )
    return out


def _relation_candidates(scene: SceneView, rng: random.Random) -> list[_Candidate]:
    refs = {id(obj): _pick(_references(scene, obj, avoid="position"), rng) for obj in scene.objects}
    pairs = []
    for a in scene.objects:
        for b in scene.objects:
            word = clear_relation(a, b) if a is not b else None
            if word is not None and refs[id(a)] is not None and refs[id(b)] is not None:
                pairs.append((a, b, word))
    chosen = rng.sample(pairs, min(MAX_RELATIONS_PER_SCENE, len(pairs)))
    out = []
    for a, b, word in chosen:
        question = f"Where is {refs[id(a)]} relative to {refs[id(b)]}?"
        out.append(_Candidate(QA(question, word, "position"), tuple(r for r in RELATIONS if r != word)))
    return out


def _text_distractors(text: str, rng: random.Random, n: int = 6) -> tuple[str, ...]:
    """Other words a sign could say (``concepts.SIGN_WORDS``): the plausible misreadings of a closed
    vocabulary."""
    others = [word for word in SIGN_WORDS if word != text]
    return tuple(rng.sample(others, min(n, len(others))))


def _text_candidates(scene: SceneView, rng: random.Random) -> list[_Candidate]:
    out = []
    for obj in scene.objects:
        if obj.text is None:
            continue
        ref = _pick(_references(scene, obj, avoid="text"), rng)
        if ref is not None:
            qa = QA(f"What is written on {ref}?", obj.text, "text")
            out.append(_Candidate(qa, _text_distractors(obj.text, rng), obj))
    return out


def _candidates(scene: SceneView, rng: random.Random, *, relations: bool) -> list[_Candidate]:
    out = _color_candidates(scene, rng) + _shape_candidates(scene, rng) + _count_candidates(scene)
    out += _position_candidates(scene, rng)
    if relations:
        out += _relation_candidates(scene, rng)
    return out + _text_candidates(scene, rng)


# ---------------------------------------------------------------------------------------------------------
# Public question makers


def short_answer_questions(scene: SceneView, rng: random.Random) -> list[QA]:
    """Every unambiguous short-answer question about ``scene`` (grouped by category: color, shape, count,
    position, text). ``rng`` only chooses among equally valid phrasings. Answers are single words or phrases:
    a palette colour, a shape name, digits, a grid position ("top left"), or a sign's word."""
    return [candidate.qa for candidate in _candidates(scene, rng, relations=False)]


def detail_questions(scene: SceneView, rng: random.Random, max_object_side: float) -> list[QA]:
    """Small-detail questions: what every sign says, and the colour of objects whose longer box side is at
    most ``max_object_side`` pixels. Meant for high-resolution scenes whose details vanish when downscaled."""
    out = []
    for candidate in _color_candidates(scene, rng) + _text_candidates(scene, rng):
        target = candidate.target
        assert target is not None  # colour and text candidates always name their object
        if candidate.qa.category == "text" or max(target.bbox[2], target.bbox[3]) <= max_object_side:
            out.append(candidate.qa)
    return out


def multiple_choice_questions(
    scene: SceneView, rng: random.Random, n_options: int = 4
) -> list[MultipleChoice]:
    """Multiple-choice versions of the short-answer questions plus relation questions ("Where is the star
    relative to the circle?"). Distractors are always wrong answers of the same kind; the right option's
    position is drawn from ``rng``. Questions with too few possible distractors are skipped."""
    if not 2 <= n_options <= 26:
        raise ValueError(f"n_options must be in 2..26, got {n_options}")
    out = []
    for candidate in _candidates(scene, rng, relations=True):
        if len(candidate.distractors) < n_options - 1:
            continue
        options = [candidate.qa.answer, *rng.sample(candidate.distractors, n_options - 1)]
        rng.shuffle(options)
        letter = string.ascii_uppercase[options.index(candidate.qa.answer)]
        out.append(MultipleChoice(candidate.qa.question, tuple(options), letter, candidate.qa.category))
    return out


def _ranked(names: list[str], score: Callable[[str], float], rng: random.Random) -> list[str]:
    # Shuffle first so that a stable sort breaks score ties by the seeded rng, not by spelling.
    order = sorted(names)
    rng.shuffle(order)
    return sorted(order, key=lambda name: -score(name))


def yes_no_probes(
    scene: SceneView,
    rng: random.Random,
    categories: Sequence[str],
    popularity: dict[str, int],
    cooccurrence: dict[tuple[str, str], int],
    n_per_kind: int = 3,
) -> list[QA]:
    """POPE object-existence probes ("Is there a star in the image?").

    For each kind in POPE_KINDS the same ``k`` present categories give "yes" probes and ``k`` absent ones give
    "no" probes, so every kind is balanced; ``k = min(n_per_kind, #present, #absent)``. Negatives are drawn
    uniformly (random), as the most frequent categories in the dataset (popular, by ``popularity``), or as
    the categories that co-occur most with the present ones (adversarial, by ``cooccurrence``; either key
    order counts). Only names in ``categories`` are probed; QA.category is the kind."""
    if n_per_kind < 1:
        raise ValueError(f"n_per_kind must be at least 1, got {n_per_kind}")
    if not categories:
        raise ValueError("categories must name at least one category to probe")
    in_scene = {obj.category for obj in scene.objects}
    present = sorted(set(categories) & in_scene)
    absent = sorted(set(categories) - in_scene)
    k = min(n_per_kind, len(present), len(absent))
    if k == 0:
        return []
    positives = rng.sample(present, k)

    def cooccurs(name: str) -> float:
        return sum(cooccurrence.get((p, name), 0) + cooccurrence.get((name, p), 0) for p in in_scene)

    negatives = {
        "random": rng.sample(absent, k),
        "popular": _ranked(absent, lambda name: popularity.get(name, 0), rng)[:k],
        "adversarial": _ranked(absent, cooccurs, rng)[:k],
    }
    out = []
    for kind in POPE_KINDS:
        out += [QA(f"Is there {with_article(name)} in the image?", "yes", kind) for name in positives]
        out += [QA(f"Is there {with_article(name)} in the image?", "no", kind) for name in negatives[kind]]
    return out
