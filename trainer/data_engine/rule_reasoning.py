"""Complex-reasoning questions from the scene graph (the rule teacher's ``complex_reasoning`` type).

Each template asks something that needs more than naming one object (compare sizes, count under a condition,
find the nearest object, compare attributes, group objects) and answers with the steps that lead there. A
template returns None when the scene does not support an unambiguous answer; the teacher then tries another.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable

from trainer.data_engine.rule_phrases import (
    appearance,
    area_fraction,
    capitalize,
    choose,
    direction_phrase,
    join_words,
    noun_phrase,
    number_word,
    percent,
    reference,
    where,
)
from trainer.data_engine.teachers import Turn
from trainer.synthworld.concepts import plural, with_article
from trainer.synthworld.questions import SceneObject, SceneView

# A "nearest" or "largest" answer is only given when the runner-up is clearly behind (ratio below this).
CLEAR_MARGIN = 0.8
_COMPARED_ATTRIBUTES = ("category", "color", "pattern", "size")


def _named(scene: SceneView, obj: SceneObject) -> str:
    return reference(scene, obj) or f"{noun_phrase(obj)} {where(obj, scene)}"


def largest_object(scene: SceneView, rng: random.Random) -> Turn | None:
    if len(scene.objects) < 2:
        return None
    ranked = sorted(scene.objects, key=lambda obj: area_fraction(obj, scene), reverse=True)
    big, second, small = ranked[0], ranked[1], ranked[-1]
    if (
        area_fraction(second, scene) > CLEAR_MARGIN * area_fraction(big, scene)
        or reference(scene, big) is None
    ):
        return None
    question = choose(
        rng,
        (
            "Which object takes up the most space in the image, and where is it?",
            "What is the biggest object here, and where does it sit?",
        ),
    )
    answer = (
        f"Comparing the objects by the area they cover, {reference(scene, big)} is the largest: it fills "
        f"{percent(area_fraction(big, scene))} of the image and sits {where(big, scene)}. The next biggest, "
        f"{_named(scene, second)}, covers {percent(area_fraction(second, scene))}, and the smallest, "
        f"{_named(scene, small)}, only {percent(area_fraction(small, scene))}."
    )
    return Turn(question, answer)


def removal_count(scene: SceneView, rng: random.Random) -> Turn | None:
    """Counting under a condition: "If every red object were removed, how many would be left?" (by colour;
    by category for COCO)."""
    if any(obj.crowd for obj in scene.objects) or len(scene.objects) < 2:
        return None
    groups: dict[str, list[SceneObject]] = defaultdict(list)
    colored = all(obj.color for obj in scene.objects) and not any(obj.species for obj in scene.objects)
    for obj in scene.objects:
        groups[f"{obj.color} object" if colored else obj.category].append(obj)
    options = sorted(name for name, members in groups.items() if len(members) < len(scene.objects))
    if not options:
        return None
    name = options[rng.randrange(len(options))]
    removed, total = groups[name], len(scene.objects)
    left = total - len(removed)
    question = f"If every {name} were taken out of the picture, how many objects would be left?"
    verb = "is" if len(removed) == 1 else "are"
    answer = (
        f"The image contains {number_word(total)} objects in total. {capitalize(number_word(len(removed)))} of "
        f"them {verb} {plural(name) if len(removed) > 1 else with_article(name)}: "
        f"{join_words([noun_phrase(obj) for obj in removed])}. Taking {'it' if len(removed) == 1 else 'them'} "
        f"away leaves {number_word(left)} object{'s' if left != 1 else ''}."
    )
    return Turn(question, answer)


def _distance(a: SceneObject, b: SceneObject, scene: SceneView) -> float:
    (ax, ay), (bx, by) = a.center, b.center
    return math.hypot((ax - bx) / scene.width, (ay - by) / scene.height)


def nearest_object(scene: SceneView, rng: random.Random) -> Turn | None:
    anchors = [obj for obj in scene.objects if reference(scene, obj) is not None]
    if len(scene.objects) < 3 or not anchors:
        return None
    anchor = anchors[rng.randrange(len(anchors))]
    others = sorted((o for o in scene.objects if o is not anchor), key=lambda o: _distance(anchor, o, scene))
    near, runner_up = others[0], others[1]
    if _distance(anchor, near, scene) > CLEAR_MARGIN * _distance(anchor, runner_up, scene):
        return None
    anchor_ref = reference(scene, anchor)
    question = f"Which object is closest to {anchor_ref}, and in which direction is it?"
    answer = (
        f"Measuring between the centres of the objects, {_named(scene, near)} is the closest to {anchor_ref}, "
        f"about {_distance(anchor, near, scene):.2f} of the image size away, and it lies "
        f"{direction_phrase(near, anchor)} it. The next nearest, {_named(scene, runner_up)}, is "
        f"further off at about {_distance(anchor, runner_up, scene):.2f}."
    )
    return Turn(question, answer)


def _attribute(obj: SceneObject, name: str) -> str | None:
    return getattr(obj, name)


def common_ground(scene: SceneView, rng: random.Random) -> Turn | None:
    """What two objects share and how they differ; needs attributes, so SynthWorld only."""
    referable = [obj for obj in scene.objects if reference(scene, obj) is not None and obj.color]
    pairs = []
    for i, a in enumerate(referable):
        for b in referable[i + 1 :]:
            shared = [
                n for n in _COMPARED_ATTRIBUTES if _attribute(a, n) and _attribute(a, n) == _attribute(b, n)
            ]
            differ = [
                n for n in _COMPARED_ATTRIBUTES if _attribute(a, n) and _attribute(b, n) and n not in shared
            ]
            if shared and differ:
                pairs.append((a, b, shared, differ))
    if not pairs:
        return None
    a, b, shared, differ = pairs[rng.randrange(len(pairs))]
    ref_a, ref_b = reference(scene, a), reference(scene, b)
    words = {"category": "shape", "color": "color", "pattern": "pattern", "size": "size"}
    same = join_words([f"the same {words[n]} ({_attribute(a, n)})" for n in shared])
    diff = join_words([f"{words[n]} ({_attribute(a, n)} versus {_attribute(b, n)})" for n in differ])
    question = f"What do {ref_a} and {ref_b} have in common, and how do they differ?"
    answer = f"Both objects have {same}. They differ in {diff}, which is how you can tell them apart."
    return Turn(question, answer)


def group_by_color(scene: SceneView, rng: random.Random) -> Turn | None:
    colored = [obj for obj in scene.objects if obj.color]
    if len(colored) < 3 or len(colored) != len(scene.objects) or any(obj.species for obj in colored):
        return None
    groups: dict[str, list[SceneObject]] = defaultdict(list)
    for obj in colored:
        groups[obj.color].append(obj)
    if len(groups) < 2 or len(groups) == len(colored):
        return None
    parts = [
        f"{color}: {join_words([with_article(appearance(obj)) for obj in members])}"
        for color, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    ]
    question = "If you sorted the objects into groups by color, what groups would you get?"
    answer = (
        f"Sorting the {number_word(len(colored))} objects by color gives {number_word(len(groups))} groups. "
        f"{capitalize('; '.join(parts))}."
    )
    return Turn(question, answer)


TEMPLATES: tuple[Callable[[SceneView, random.Random], Turn | None], ...] = (
    largest_object,
    removal_count,
    nearest_object,
    common_ground,
    group_by_color,
)


def make_reasoning(scene: SceneView, rng: random.Random) -> Turn | None:
    """Try the templates in a seeded random order; the first that applies wins."""
    order = list(TEMPLATES)
    rng.shuffle(order)
    for template in order:
        turn = template(scene, rng)
        if turn is not None:
            return turn
    return None
