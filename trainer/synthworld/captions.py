"""Clean captions for scenes: several true sentences that mention only objects present in the image.

Colour words are only ever an object's body colour or a species' marking colour; the background is described
with non-palette words (light/dark, plain/gradient/textured/grainy) so no caption names an absent colour.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from trainer.synthworld.concepts import (
    COLORS,
    SHAPES,
    SIGN,
    SIGN_WORDS,
    SPECIES_BY_NAME,
    plural,
    with_article,
)
from trainer.synthworld.placed import PlacedObject, scene_view
from trainer.synthworld.render import Background
from trainer.synthworld.spatial import clear_region, clear_relation

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_MARK_NOUNS = {"striped": "stripes", "dotted": "dots", "checkered": "checks"}
_RELATION_PHRASES = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
_BACKGROUND_WORDS = {"flat": "plain", "gradient": "gradient", "texture": "textured", "grain": "grainy"}


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def join_words(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def looks(obj: PlacedObject, rng: random.Random) -> str:
    """What the object looks like, without article: 'red star', 'blue striped circle', 'sign reading EXIT'."""
    if obj.category == SIGN:
        template = rng.choice(
            ("sign reading {}", "sign that says {}", "sign with the word {}", "sign saying {}")
        )
        return template.format(obj.text)
    if obj.species is not None:
        species = SPECIES_BY_NAME[obj.species]
        return f"{obj.color} {obj.category} with {species.marking} {_MARK_NOUNS[species.pattern]}"
    words = [obj.color or ""]
    if obj.pattern not in (None, "plain"):
        words.append(obj.pattern or "")
    if rng.random() < 0.25:
        words.insert(0, obj.size)
    return " ".join([*filter(None, words), obj.category])


def object_phrase(obj: PlacedObject, rng: random.Random, species_name_rate: float = 0.5) -> str:
    """The object with an article; species are sometimes called by their name ('a vorn')."""
    if obj.species is not None and rng.random() < species_name_rate:
        if rng.random() < 0.5:
            return with_article(obj.species)
        return f"{with_article(obj.species)} ({with_article(looks(obj, rng))})"
    return with_article(looks(obj, rng))


def category_counts(objects: tuple[PlacedObject, ...]) -> str:
    """'two stars, a circle and a sign' (largest groups first, then by name)."""
    counts = Counter(obj.category for obj in objects)
    parts = []
    for category, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        parts.append(with_article(category) if n == 1 else f"{number_word(n)} {plural(category)}")
    return join_words(parts)


def background_words(background: Background) -> str:
    return f"{'dark' if background.is_dark else 'light'} {_BACKGROUND_WORDS[background.kind]}"


def _capitalised(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _relation_sentence(
    objects: tuple[PlacedObject, ...], width: int, height: int, rng: random.Random
) -> str | None:
    view = scene_view(width, height, objects)
    pairs = [
        (i, j, word)
        for i, a in enumerate(view.objects)
        for j, b in enumerate(view.objects)
        if i != j and (word := clear_relation(a, b)) is not None
    ]
    if not pairs:
        return None
    i, j, word = rng.choice(pairs)
    return f"{object_phrase(objects[i], rng)} {_RELATION_PHRASES[word]} {object_phrase(objects[j], rng)}."


def _position_sentence(
    objects: tuple[PlacedObject, ...], width: int, height: int, rng: random.Random
) -> str | None:
    parts = []
    for obj in objects:
        region = clear_region(obj.scene_object(), width, height)
        if region is not None:
            parts.append(f"{object_phrase(obj, rng)} {region.phrase}")
    return f"{join_words(parts)}." if parts else None


def scene_captions(
    objects: tuple[PlacedObject, ...],
    background: Background,
    width: int,
    height: int,
    rng: random.Random,
    n: int = 5,
) -> list[str]:
    """``n`` distinct clean captions (COCO style), each true of the scene and naming only present objects."""
    if not objects:
        raise ValueError("a scene needs at least one object to caption")
    shuffled = list(objects)
    rng.shuffle(shuffled)
    bg = background_words(background)
    count = number_word(len(objects))
    noun = "object" if len(objects) == 1 else "objects"
    candidates = [
        f"{join_words([object_phrase(obj, rng) for obj in shuffled])} on a {bg} background.",
        f"{count} {noun} on a {bg} background: {category_counts(objects)}.",
        _relation_sentence(objects, width, height, rng),
        _position_sentence(objects, width, height, rng),
        f"an image showing {category_counts(objects)}.",
        f"a {bg} background with {join_words([object_phrase(obj, rng) for obj in objects])}.",
        f"{join_words([object_phrase(obj, rng, 1.0) for obj in shuffled])}.",
        f"a picture of {category_counts(objects)} on a {bg} background.",
    ]
    captions: list[str] = []
    for sentence in candidates:
        if sentence is not None and _capitalised(sentence) not in captions:
            captions.append(_capitalised(sentence))
    # Extra phrasings until there are n distinct ones (the phrase choices are random, so these differ).
    for _ in range(50):
        if len(captions) >= n:
            break
        sentence = _capitalised(f"{join_words([object_phrase(obj, rng) for obj in shuffled])}.")
        if sentence not in captions:
            captions.append(sentence)
    if len(captions) < n:
        raise RuntimeError(f"could only phrase {len(captions)} distinct captions, need {n}")
    picked = captions[:2] + rng.sample(captions[2:], n - 2) if n > 2 else captions[:n]
    return picked


class _Described(Protocol):
    category: str
    color: str | None
    species: str | None
    text: str | None


_CATEGORY_WORDS = {word: name for name in (*SHAPES, SIGN) for word in (name, plural(name))}


def unsupported_words(caption: str, objects: Iterable[_Described]) -> list[str]:
    """Words of ``caption`` naming a shape, sign, colour, species, sign word or 2-3 character code that none of
    ``objects`` justifies (colours count if they are a body colour or a present species' marking colour).
    An empty list means the caption mentions only present things; usable on any generated text."""
    objects = list(objects)
    categories = {obj.category for obj in objects}
    colors = {obj.color for obj in objects if obj.color}
    colors |= {SPECIES_BY_NAME[obj.species].marking for obj in objects if obj.species in SPECIES_BY_NAME}
    species = {obj.species for obj in objects if obj.species}
    codes = {obj.text for obj in objects if obj.text}
    bad = []
    for word in re.findall(r"[A-Za-z0-9]+", caption):
        low = word.lower()
        if (
            (low in _CATEGORY_WORDS and _CATEGORY_WORDS[low] not in categories)
            or (low in COLORS and low not in colors)
            or (low in SPECIES_BY_NAME and low not in species)
            or (word in SIGN_WORDS and word not in codes)
            or (word.isupper() and len(word) in (2, 3) and word not in codes and word != "IMG")
        ):
            bad.append(word)
    return bad
