"""Multi-object scenes: regular ones (2-5 objects, 128-192 px) and LARGE ones (256-320 px, small objects and
signs whose codes are drawn at glyph scale 2, i.e. 10x14 px per character)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from trainer.synthworld.concepts import COLOR_NAMES, SHAPES, SPECIES
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.placed import PlacedObject
from trainer.synthworld.render import Background, render_image, sample_background, sign_size
from trainer.synthworld.sampling import (
    free_box,
    random_pattern,
    random_sign_word,
    shape_object,
    sign_object,
    size_name,
    species_object,
)

# Object side as a fraction of the canvas' shorter side, per size class (regular scenes).
_REGULAR_SIDES = {"small": (0.13, 0.2), "medium": (0.22, 0.3), "large": (0.32, 0.42)}
# LARGE scenes hold only small things: "tiny" ones (<= 4% of the side, ~2 px at a 64-px tile) and small ones.
_LARGE_SCENE_SIDES = ((0.03, 0.042), (0.06, 0.1))
_MAX_SCENE_TRIES = 20


@dataclass(frozen=True)
class SceneSpec:
    width: int
    height: int
    large: bool
    background: Background
    objects: tuple[PlacedObject, ...]

    def render(self):  # -> PIL.Image.Image
        return render_image(self.width, self.height, self.background, self.objects)


def _shape(
    rng: random.Random, box: tuple[int, int, int, int], size: str, species_rate: float
) -> PlacedObject:
    if rng.random() < species_rate:
        return species_object(rng, rng.choice(SPECIES), box, size)
    return shape_object(rng, rng.choice(SHAPES), box, size, rng.choice(COLOR_NAMES), random_pattern(rng))


def _regular_objects(rng: random.Random, config: WorldConfig, width: int, height: int) -> list[PlacedObject]:
    side = min(width, height)
    objects: list[PlacedObject] = []
    taken: list[tuple[int, int, int, int]] = []
    if rng.random() < config.sign_rate:
        text = random_sign_word(rng)
        w, h = sign_size(text, config.regular_glyph_scale)
        box = free_box(rng, width, height, w, h, taken)
        if box is not None:
            objects.append(sign_object(rng, text, box[0], box[1], config.regular_glyph_scale, side))
            taken.append(objects[-1].bbox)
    for _ in range(rng.randint(*config.scene_objects) - len(objects)):
        size = rng.choices(list(_REGULAR_SIDES), weights=config.regular_size_weights)[0]
        low, high = _REGULAR_SIDES[size]
        length = max(6, round(side * rng.uniform(low, high)))
        box = free_box(rng, width, height, length, length, taken)
        if box is not None:
            objects.append(_shape(rng, box, size_name(length, side), config.scene_species_rate))
            taken.append(box)
    return objects


def _large_objects(rng: random.Random, config: WorldConfig, width: int, height: int) -> list[PlacedObject]:
    side = min(width, height)
    objects: list[PlacedObject] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(rng.randint(*config.large_scene_signs)):
        text = random_sign_word(rng)
        w, h = sign_size(text, config.large_glyph_scale)
        box = free_box(rng, width, height, w, h, taken)
        if box is not None:
            objects.append(sign_object(rng, text, box[0], box[1], config.large_glyph_scale, side))
            taken.append(box)
    for _ in range(rng.randint(*config.large_scene_shapes)):
        low, high = rng.choice(_LARGE_SCENE_SIDES)
        length = max(6, round(side * rng.uniform(low, high)))
        box = free_box(rng, width, height, length, length, taken)
        if box is not None:
            objects.append(_shape(rng, box, size_name(length, side), config.scene_species_rate))
            taken.append(box)
    return objects


def sample_scene(rng: random.Random, config: WorldConfig, large: bool) -> SceneSpec:
    """A scene with non-overlapping objects (boxes at least BOX_GAP px apart) that fill their boxes exactly."""
    low_count = (
        config.large_scene_shapes[0] + config.large_scene_signs[0] if large else config.scene_objects[0]
    )
    size_range = config.large_scene_size if large else config.scene_size
    for _ in range(_MAX_SCENE_TRIES):
        width, height = rng.randint(*size_range), rng.randint(*size_range)
        place = _large_objects if large else _regular_objects
        objects = place(rng, config, width, height)
        if len(objects) >= low_count:
            return SceneSpec(width, height, large, sample_background(rng), tuple(objects))
    raise RuntimeError(
        f"could not place {low_count} objects in {_MAX_SCENE_TRIES} tries; check WorldConfig sizes"
    )
