"""The LAION-like web pool: small images with 1-3 objects and noisy alt-text.

Concept frequencies are long-tailed: species follow a Zipf quota (the rarest get ~10-20 images at the default
preset), shapes and colours a mild Zipf. Captions are noisy the way scraped alt-text is: SEO junk words,
camera file names, partial descriptions, generic captions repeated verbatim across unrelated images, and (in
a second pass, see ``mismatch_plan``) a few captions that belong to another image.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from trainer.synthworld.captions import looks
from trainer.synthworld.concepts import SPECIES_BY_NAME
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.placed import PlacedObject
from trainer.synthworld.render import Background, sample_background, sign_size
from trainer.synthworld.sampling import (
    free_box,
    random_pattern,
    random_sign_word,
    shape_object,
    sign_object,
    size_name,
    species_object,
    zipf_weights,
)

MAX_CAPTION_WORDS = 30
_OBJECT_COUNT_WEIGHTS = (0.55, 0.3, 0.15)  # 1, 2 or 3 objects
# Pool images whose main object is a sign. Signs say one of 16 words (concepts.SIGN_WORDS) and most of their
# captions name the word, so a tower sees each word on a few hundred images with its name (issue #18; at
# 0.05 with random codes, 700 labelled sign images taught the tower no reading).
_SIGN_RATE = 0.15
_JUNK = (
    "stock vector", "free png download", "wallpaper hd", "clipart", "vector illustration", "royalty free",
    "isolated on white background", "icon", "logo design", "cartoon", "sticker", "t-shirt print",
    "high resolution", "4k", "premium vector", "flat design", "emoji", "symbol", "cute", "simple",
    "modern art", "pin on pinterest", "buy online", "best price", "free shipping", "new", "hd png",
    "transparent background", "graphic", "design element", "template", "set", "collection",
)  # fmt: skip
# Whole captions that carry no object information; reused verbatim, they make exact duplicates.
_GENERIC = (
    "abstract geometric background", "untitled", "image", "colorful shapes pattern", "geometric icons",
    "kids drawing", "minimal poster", "new arrivals", "product photo", "shapes", "my collection",
    "screenshot", "download", "art print", "wallpaper",
)  # fmt: skip


@dataclass(frozen=True)
class PoolPlan:
    """Decisions made once for the whole pool (in the parent process), so items are independent."""

    shape_order: tuple[str, ...]  # Zipf rank order (most frequent first)
    color_order: tuple[str, ...]
    concept_exponent: float
    species_named_rate: float


@dataclass(frozen=True)
class PoolItem:
    width: int
    height: int
    background: Background
    objects: tuple[PlacedObject, ...]  # the first one is the main object
    caption: str


def _camera_name(rng: random.Random) -> str:
    return rng.choice(("IMG_{:04d}", "DSC{:05d}", "photo_{:03d}", "untitled-{}", "image{:02d}.jpg")).format(
        rng.randint(1, 9999)
    )


def _junk(rng: random.Random) -> str:
    return _camera_name(rng) if rng.random() < 0.15 else rng.choice(_JUNK)


def _describe(obj: PlacedObject, rng: random.Random, plan: PoolPlan, name_species: bool) -> str:
    """A partial or full description of one object, as web alt-text would give it."""
    if obj.species is not None and name_species:
        return rng.choice(
            (obj.species, obj.species, f"{obj.species} {rng.choice(('photo', 'drawing', 'icon'))}")
        )
    if obj.text is not None:
        return rng.choice(
            (
                f"a sign that says {obj.text}",
                f"sign {obj.text}",
                obj.text,
                f"{obj.text} sign",
                f"sign reading {obj.text}",
                "sign",
            )
        )
    return rng.choice((looks(obj, rng), f"{obj.color} {obj.category}", obj.category, f"{obj.color} shape"))


def noisy_caption(objects: tuple[PlacedObject, ...], rng: random.Random, plan: PoolPlan) -> str:
    main = objects[0]
    name_species = main.species is not None and rng.random() < plan.species_named_rate
    desc = _describe(main, rng, plan, name_species)
    style = rng.random()
    if style < 0.05:
        caption = rng.choice(_GENERIC)
    elif style < 0.1:
        caption = _camera_name(rng)
    elif style < 0.3:
        caption = desc
    elif style < 0.55:
        caption = f"{desc} {_junk(rng)}" if rng.random() < 0.5 else f"{_junk(rng)} {desc}"
    elif style < 0.75 and len(objects) > 1:
        caption = f"{desc} and {_describe(objects[1], rng, plan, False)}"
    else:
        # SEO keyword soup: the description buried in junk, sometimes long.
        words = [desc, *(_junk(rng) for _ in range(rng.randint(2, 9)))]
        rng.shuffle(words)
        caption = " ".join(words)
    if name_species and main.species not in caption.split():
        caption = f"{main.species} {caption}"  # the naming decision above must show in the text
    return " ".join(caption.split()[:MAX_CAPTION_WORDS])


def _main_object(
    rng: random.Random, plan: PoolPlan, species: str | None, box: tuple[int, int, int, int], side: int
) -> PlacedObject:
    size = size_name(box[2], side)
    if species is not None:
        return species_object(rng, SPECIES_BY_NAME[species], box, size)
    weights = zipf_weights(len(plan.shape_order), plan.concept_exponent)
    shape = rng.choices(plan.shape_order, weights=list(weights))[0]
    color = rng.choices(
        plan.color_order, weights=list(zipf_weights(len(plan.color_order), plan.concept_exponent))
    )[0]
    return shape_object(rng, shape, box, size, color, random_pattern(rng))


def sample_pool_item(
    rng: random.Random, config: WorldConfig, plan: PoolPlan, species: str | None
) -> PoolItem:
    """One pool image; ``species`` (from the Zipf quota) makes the main object that species."""
    width, height = rng.randint(*config.pool_image_size), rng.randint(*config.pool_image_size)
    side = min(width, height)
    n_objects = rng.choices((1, 2, 3), weights=_OBJECT_COUNT_WEIGHTS)[0]
    n_objects = max(config.pool_objects[0], min(config.pool_objects[1], n_objects))
    objects: list[PlacedObject] = []
    taken: list[tuple[int, int, int, int]] = []
    if species is None and rng.random() < _SIGN_RATE:
        text, scale = random_sign_word(rng), rng.choice((2, 3))
        w, h = sign_size(text, scale)
        box = free_box(rng, width, height, w, h, taken)
        if box is not None:
            objects.append(sign_object(rng, text, box[0], box[1], scale, side))
            taken.append(box)
    if not objects:
        length = round(side * rng.uniform(0.35, 0.7))
        box = free_box(rng, width, height, length, length, taken)
        assert box is not None  # an empty canvas always fits a box smaller than its side
        objects.append(_main_object(rng, plan, species, box, side))
        taken.append(box)
    for _ in range(n_objects - 1):
        length = round(side * rng.uniform(0.15, 0.3))
        box = free_box(rng, width, height, length, length, taken)
        if box is not None:
            objects.append(_main_object(rng, plan, None, box, side))
            taken.append(box)
    caption = noisy_caption(tuple(objects), rng, plan)
    return PoolItem(width, height, sample_background(rng), tuple(objects), caption)


def mismatch_plan(n_items: int, rate: float, rng: random.Random) -> dict[int, int]:
    """Which items get another item's caption: {receiver index: donor index}, donors never themselves."""
    if n_items < 2:
        return {}
    receivers = sorted(rng.sample(range(n_items), round(n_items * rate)))
    plan = {}
    for receiver in receivers:
        donor = rng.randrange(n_items - 1)
        plan[receiver] = donor + (donor >= receiver)
    return plan
