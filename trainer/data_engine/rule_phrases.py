"""English building blocks for the rule teacher: object phrases, references, positions, lists, numbers.

Everything here only restates what the annotations say; a phrase never adds an attribute the scene lacks, so
real COCO objects (no colour, pattern or text) are named by category alone.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from trainer.synthworld.concepts import plural, with_article
from trainer.synthworld.questions import SceneObject, SceneView, grid_position
from trainer.synthworld.spatial import clear_region, may_be_in_region

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_RELATION_PHRASES = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}


def number_word(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def appearance(obj: SceneObject) -> str:
    """Noun with the attributes the annotation knows, e.g. "large red striped circle" or "person".

    "plain" is left out: "a red circle" already says it has no pattern, and reads far better."""
    pattern = obj.pattern if obj.pattern != "plain" else None
    words = [w for w in (obj.size, obj.color, pattern) if w]
    return " ".join([*words, obj.category])


def noun_phrase(obj: SceneObject) -> str:
    """Indefinite phrase: "a large red striped circle", "a small sign reading K7", "a person"."""
    if obj.crowd:
        # A COCO crowd box covers many instances of its category at once.
        return f"a group of {plural(appearance(obj))}"
    phrase = with_article(appearance(obj))
    if obj.text:
        phrase += f" reading {obj.text}"
    return phrase


def relation_phrase(word: str) -> str:
    return _RELATION_PHRASES[word]


def direction_phrase(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` lies seen from ``b``: "above", "to the left of", or diagonal "above and to the left of"
    when neither axis clearly dominates (the smaller offset is at least half the larger)."""
    (ax, ay), (bx, by) = a.center, b.center
    dx, dy = ax - bx, ay - by
    vertical = "above" if dy < 0 else "below"
    horizontal = "to the left of" if dx < 0 else "to the right of"
    if min(abs(dx), abs(dy)) >= 0.5 * max(abs(dx), abs(dy)):
        return f"{vertical} and {horizontal}"
    return horizontal if abs(dx) > abs(dy) else vertical


def where(obj: SceneObject, scene: SceneView) -> str:
    """Place phrase: "in the top left" when the centre is clearly in one grid cell, else "near the top left"."""
    region = clear_region(obj, scene.width, scene.height)
    if region is not None:
        return region.phrase
    return f"near the {grid_position(obj.bbox, scene.width, scene.height)}"


def reference(scene: SceneView, obj: SceneObject) -> str | None:
    """A definite description that fits ``obj`` and no other object, or None when none of ours does."""
    same = [o for o in scene.objects if o is not obj and o.category == obj.category]
    if obj.text and not any(o.text == obj.text for o in same):
        return f"the {obj.category} reading {obj.text}"
    if not same and not obj.crowd:
        return f"the {obj.category}"
    # A species shows a second palette colour (its markings), so a colour word cannot single one out safely.
    if obj.color and obj.species is None and not any(o.color == obj.color or o.species for o in same):
        return f"the {obj.color} {obj.category}"
    if obj.pattern not in (None, "plain") and not any(o.pattern == obj.pattern for o in same):
        return f"the {obj.pattern} {obj.category}"
    region = clear_region(obj, scene.width, scene.height)
    if region is not None and not any(may_be_in_region(o, region, scene.width, scene.height) for o in same):
        return f"the {obj.category} {region.phrase}"
    return None


def object_inventory(scene: SceneView) -> str:
    """Inventory such as "a red circle, two people and a sign reading K7" (look-alikes counted together)."""
    counts = Counter(noun_phrase(obj) if obj.text or obj.crowd else appearance(obj) for obj in scene.objects)
    parts = []
    for phrase, count in counts.items():
        if phrase.startswith(("a ", "an ")):
            parts.append(phrase)
        elif count == 1:
            parts.append(with_article(phrase))
        else:
            parts.append(f"{number_word(count)} {plural(phrase)}")
    return join_words(parts)


def area_fraction(obj: SceneObject, scene: SceneView) -> float:
    _, _, w, h = obj.bbox
    return (w * h) / float(scene.width * scene.height)


def percent(fraction: float) -> str:
    value = round(100 * fraction)
    return "less than 1%" if value < 1 else f"about {value}%"


def choose(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]
