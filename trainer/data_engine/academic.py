"""LLaVA-1.5-style "academic" VQA records: short answers, balanced yes/no probes and multiple choice.

LLaVA-1.5 found that academic VQA data with a response-format prompt in the instruction mix is what teaches a
model to answer briefly when asked to, and to say "no" to absent objects (POPE). This module builds that data
from a TRAIN scene's annotations: one multi-turn record per image (LLaVA-1.5 packs an image's VQA questions
into one conversation, so the image is encoded once for many supervised answers) with

* short-answer questions stratified over the categories (colour, shape, count, position, sign text), so
  every category is trained, not mostly counts (the most numerous question kind);
* POPE-style existence probes, balanced yes/no, whose "no" objects are sampled randomly, among the most
  popular categories, or among those that co-occur most with what is present (adversarial), with popularity
  and co-occurrence counted on the TRAIN scenes;
* small-detail questions first on large scenes (sign codes, colours of tiny objects);
* optionally multiple-choice turns with lettered options.

Every turn carries the exact format prompt of ``vision_common.chat.format_prompts``. Pure functions; the caller
supplies the seeded ``random.Random``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from trainer.data_engine.schema import make_record
from trainer.synthworld.questions import (
    QA,
    QUESTION_CATEGORIES,
    SceneView,
    detail_questions,
    multiple_choice_questions,
    short_answer_questions,
    yes_no_probes,
)
from vision_common.chat.format_prompts import SHORT_ANSWER, YES_NO

# Same threshold as the eval's small-detail set: an object this small (fraction of the shorter scene side)
# is a few pixels wide after the base tile's downscale but legible in the AnyRes tiles.
SMALL_OBJECT_FRACTION = 0.045
# A large scene is one whose shorter side is at least this many pixels (SynthWorld's large scenes: 256-320).
LARGE_SCENE_MIN_SIDE = 240


@dataclass(frozen=True)
class AcademicConfig:
    """How many turns of each kind one image's record holds."""

    short_turns: int = 8
    short_per_category: int = 2
    yes_no_pairs: int = 3  # each pair is one "yes" probe and one "no" probe
    detail_turns: int = 2  # small-detail questions, only on large scenes
    mc_turns: int = 1
    # Share of yes/no probes that use the explicit yes/no prompt instead of the short-answer one.
    yes_no_prompt_share: float = 0.25
    # Share of records that open with their yes/no probes (the others have none; see ``academic_turns``).
    probe_record_share: float = 0.5
    # Records per image, each drawn with its own seeded RNG (a drill stage asks many more questions per image
    # than one record holds; docs/recipe.md).
    repeats: int = 1
    # Keep probability per short-answer category (QUESTION_CATEGORIES); unlisted categories are always kept.
    # A drill thins the categories the text prior already answers (counts: "1" is right on most simple
    # scenes) so that an update's answers mostly need the image.
    keep: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.short_per_category < 1:
            raise ValueError(f"AcademicConfig.short_per_category must be >= 1, got {self.short_per_category}")
        for name in ("short_turns", "yes_no_pairs", "detail_turns", "mc_turns"):
            if getattr(self, name) < 0:
                raise ValueError(f"AcademicConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.short_turns + self.yes_no_pairs + self.detail_turns + self.mc_turns == 0:
            raise ValueError("AcademicConfig: every turn count is 0, so no record could be built")
        if not 0.0 <= self.probe_record_share <= 1.0:
            raise ValueError(
                f"AcademicConfig.probe_record_share must be in [0, 1], got {self.probe_record_share}"
            )
        if self.repeats < 1:
            raise ValueError(f"AcademicConfig.repeats must be >= 1, got {self.repeats}")
        for category, share in self.keep.items():
            if category not in QUESTION_CATEGORIES:
                raise ValueError(
                    f"AcademicConfig.keep names {category!r}; categories: {', '.join(QUESTION_CATEGORIES)}"
                )
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"AcademicConfig.keep[{category!r}] must be in [0, 1], got {share}")
        if not 0.0 <= self.yes_no_prompt_share <= 1.0:
            raise ValueError(
                f"AcademicConfig.yes_no_prompt_share must be in [0, 1], got {self.yes_no_prompt_share}"
            )

    @classmethod
    def tiny(cls) -> AcademicConfig:
        return cls(short_turns=3, yes_no_pairs=1, detail_turns=1, mc_turns=1)


@dataclass(frozen=True)
class ProbeStatistics:
    """What the POPE negatives are sampled from: the probe vocabulary and TRAIN-scene statistics."""

    categories: tuple[str, ...]
    popularity: dict[str, int]
    cooccurrence: dict[tuple[str, str], int]


def probe_statistics(scenes: Iterable[SceneView], categories: Sequence[str]) -> ProbeStatistics:
    """Per-category image counts and per-pair co-occurrence counts (pairs sorted by name) over ``scenes``."""
    popularity: Counter[str] = Counter()
    cooccurrence: Counter[tuple[str, str]] = Counter()
    for scene in scenes:
        present = {obj.category for obj in scene.objects}
        popularity.update(present)
        cooccurrence.update(combinations(sorted(present), 2))
    return ProbeStatistics(tuple(categories), dict(popularity), dict(cooccurrence))


def stratified(
    items: Sequence[QA], limit: int, rng: random.Random, per_category: int | None = None
) -> list[QA]:
    """Up to ``limit`` items drawn round-robin over the categories (shuffled within each category), at most
    ``per_category`` of each, so that a scene with ten count questions and one colour question still
    contributes its colour question and counts (the most numerous kind) do not crowd the others out."""
    by_category: dict[str, list[QA]] = {}
    for qa in items:
        by_category.setdefault(qa.category, []).append(qa)
    for group in by_category.values():
        rng.shuffle(group)
        del group[per_category if per_category is not None else len(group) :]
    order = [c for c in QUESTION_CATEGORIES if c in by_category] + sorted(
        c for c in by_category if c not in QUESTION_CATEGORIES
    )
    rng.shuffle(order)
    picked: list[QA] = []
    while len(picked) < limit and any(by_category[c] for c in order):
        for category in order:
            if by_category[category] and len(picked) < limit:
                picked.append(by_category[category].pop())
    return picked


def balanced_probes(scene: SceneView, rng: random.Random, stats: ProbeStatistics, pairs: int) -> list[QA]:
    """Up to ``pairs`` yes probes and as many no probes; the negatives rotate over the POPE kinds."""
    if pairs == 0:
        return []
    probes = yes_no_probes(scene, rng, stats.categories, stats.popularity, stats.cooccurrence, pairs)
    yes = list(dict.fromkeys(qa.question for qa in probes if qa.answer == "yes"))
    # Interleave the kinds (random, popular, adversarial) so that a few pairs still cover all three.
    no_by_kind: dict[str, list[str]] = {}
    for qa in probes:
        if qa.answer == "no":
            no_by_kind.setdefault(qa.category, []).append(qa.question)
    kinds = sorted(no_by_kind)
    rng.shuffle(kinds)
    no: list[str] = []
    for position in range(max((len(v) for v in no_by_kind.values()), default=0)):
        for kind in kinds:
            questions = no_by_kind[kind]
            if position < len(questions) and questions[position] not in no:
                no.append(questions[position])
    n = min(pairs, len(yes), len(no))
    rng.shuffle(yes)
    out = [QA(q, "yes", "yes_no") for q in yes[:n]] + [QA(q, "no", "yes_no") for q in no[:n]]
    return out


def _is_large(scene: SceneView) -> bool:
    return min(scene.width, scene.height) >= LARGE_SCENE_MIN_SIDE


def _mentions(text: str, phrase: str, *, prefix: bool = False) -> bool:
    # Whole words, case-insensitive; ``prefix`` also matches plurals ("stars" mentions "star").
    tail = "" if prefix else r"\b"
    return re.search(rf"\b{re.escape(phrase.lower())}{tail}", text.lower()) is not None


@dataclass(frozen=True)
class _Turn:
    prompt: str  # the question with its format prompt (and options for multiple choice)
    answer: str  # what the assistant says
    # What an earlier turn must not have said, or the answer could be read off the conversation: for a
    # short answer the answer itself, for a "yes" probe the object's name, for multiple choice the option text.
    giveaway: str | None
    prefix: bool = False


def _leaks(turn: _Turn, earlier: Sequence[_Turn]) -> bool:
    """Whether ``turn``'s answer can be read off earlier turns instead of the image.

    "What color is the star? yellow" followed by "What shape is the yellow object?" gives the shape away, and
    any mention of a star gives "Is there a star?" away (while an absent object is never mentioned, so the
    model would learn "mentioned -> yes"). The eval asks one question per conversation, so a packed record
    must not reward reading the conversation instead of the image. Answers are checked against earlier
    questions (an earlier answer shares values with later ones by chance: two objects may both be red);
    a "yes" probe's object also against earlier answers ("What shape is the object at the top? star")."""
    if turn.giveaway is None:
        return False
    texts = [t.prompt for t in earlier] + ([t.answer for t in earlier] if turn.prefix else [])
    return any(_mentions(text, turn.giveaway, prefix=turn.prefix) for text in texts)


def _candidate_turns(
    scene: SceneView, rng: random.Random, stats: ProbeStatistics, config: AcademicConfig
) -> list[_Turn]:
    turns: list[_Turn] = []
    asked: set[str] = set()
    if config.detail_turns and _is_large(scene):
        max_side = SMALL_OBJECT_FRACTION * min(scene.width, scene.height)
        details = detail_questions(scene, rng, max_side)
        for qa in rng.sample(details, min(config.detail_turns, len(details))):
            turns.append(_Turn(f"{qa.question}\n{SHORT_ANSWER}", qa.answer, qa.answer))
            asked.add(qa.question)
    shorts = [qa for qa in short_answer_questions(scene, rng) if qa.question not in asked]
    # Draws only for thinned categories, so that the default mix is unchanged draw for draw.
    shorts = [
        qa for qa in shorts if qa.category not in config.keep or rng.random() < config.keep[qa.category]
    ]
    for qa in stratified(shorts, config.short_turns, rng, config.short_per_category):
        turns.append(_Turn(f"{qa.question}\n{SHORT_ANSWER}", qa.answer, qa.answer))
        asked.add(qa.question)
    for qa in balanced_probes(scene, rng, stats, config.yes_no_pairs):
        prompt = YES_NO if rng.random() < config.yes_no_prompt_share else SHORT_ANSWER
        subject = qa.question.removeprefix("Is there ").removesuffix(" in the image?").split(" ", 1)[-1]
        giveaway = subject if qa.answer == "yes" else None
        turns.append(_Turn(f"{qa.question}\n{prompt}", qa.answer, giveaway, prefix=True))
    if config.mc_turns:
        choices = [item for item in multiple_choice_questions(scene, rng) if item.question not in asked]
        for item in rng.sample(choices, min(config.mc_turns, len(choices))):
            turns.append(_Turn(item.prompt(), item.answer_letter, item.answer))
    return turns


def academic_turns(
    scene: SceneView, rng: random.Random, stats: ProbeStatistics, config: AcademicConfig
) -> list[tuple[str, str]]:
    """(question with its format prompt, answer) turns for one image, in a seeded random order.

    With probability ``probe_record_share`` the record opens with its yes/no probes (balanced, shuffled);
    otherwise it has none. The other turns follow, shuffled, each kept only when no earlier kept turn gives
    its answer away (``_leaks``). Probes are never filtered themselves: dropping the "yes" probes whose object
    an earlier turn named would leave the early turns mostly "yes" and the later ones mostly "no" (measured:
    60% "yes" among first turns), a position prior that a single-question eval turns into "always yes"."""
    candidates = _candidate_turns(scene, rng, stats, config)
    probes = [t for t in candidates if t.prefix]
    others = [t for t in candidates if not t.prefix]
    rng.shuffle(probes)
    rng.shuffle(others)
    kept: list[_Turn] = probes if rng.random() < config.probe_record_share else []
    for turn in others:
        if not _leaks(turn, kept):
            kept.append(turn)
    return [(t.prompt, t.answer) for t in kept]


def academic_record(
    scene: SceneView,
    rng: random.Random,
    image_id: int,
    image: str,
    stats: ProbeStatistics,
    config: AcademicConfig,
    repeat: int = 0,
) -> dict[str, Any] | None:
    """One multi-turn record ``<image_id>_academic`` (``_academic_<repeat>`` for repeats after the first),
    or None when the scene yields no question at all."""
    turns = academic_turns(scene, rng, stats, config)
    suffix = f"_{repeat}" if repeat else ""
    return make_record(f"{image_id}_academic{suffix}", image, turns) if turns else None
