"""Downstream classification tasks (zero-shot / linear-probe style): ``shapes`` (10-way), ``colors``
(10-way) and ``species`` (24-way, fine-grained, rare in the pool: the REACT setting).

Every test image has one dominant object of the labelled class, with varied background, size and position,
and sometimes one small distractor that differs in the labelled property (so the label stays unambiguous).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from trainer.synthworld.concepts import COLOR_NAMES, SHAPES, SPECIES, SPECIES_BY_NAME
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.placed import PlacedObject
from trainer.synthworld.render import Background, sample_background
from trainer.synthworld.sampling import free_box, random_pattern, shape_object, size_name, species_object

TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "shapes": SHAPES,
    "colors": COLOR_NAMES,
    "species": tuple(species.name for species in SPECIES),
}
_DISTRACTOR_RATE = 0.3


@dataclass(frozen=True)
class TaskImage:
    width: int
    height: int
    background: Background
    objects: tuple[PlacedObject, ...]  # the first one carries the label


def _main(
    rng: random.Random, task: str, name: str, box: tuple[int, int, int, int], size: str
) -> PlacedObject:
    if task == "shapes":
        return shape_object(rng, name, box, size, rng.choice(COLOR_NAMES), random_pattern(rng))
    if task == "colors":
        return shape_object(rng, rng.choice(SHAPES), box, size, name, random_pattern(rng))
    return species_object(rng, SPECIES_BY_NAME[name], box, size)


def _distractor(
    rng: random.Random, task: str, main: PlacedObject, box: tuple[int, int, int, int], size: str
) -> PlacedObject:
    shape = rng.choice([s for s in SHAPES if task != "shapes" or s != main.category])
    color = rng.choice([c for c in COLOR_NAMES if task != "colors" or c != main.color])
    # Species images get an ordinary plain shape as distractor, never a second species.
    pattern = "plain" if task == "species" else random_pattern(rng)
    return shape_object(rng, shape, box, size, color, pattern)


def sample_task_image(rng: random.Random, config: WorldConfig, task: str, class_name: str) -> TaskImage:
    if task not in TASK_CLASSES or class_name not in TASK_CLASSES[task]:
        raise ValueError(f"unknown task/class {task!r}/{class_name!r}")
    width, height = rng.randint(*config.task_image_size), rng.randint(*config.task_image_size)
    side = min(width, height)
    length = round(side * rng.uniform(0.4, 0.8))
    box = free_box(rng, width, height, length, length, [])
    assert box is not None  # an empty canvas always fits a box no larger than its side
    objects = [_main(rng, task, class_name, box, size_name(length, side))]
    if rng.random() < _DISTRACTOR_RATE:
        small = round(side * rng.uniform(0.12, 0.2))
        other = free_box(rng, width, height, small, small, [box])
        if other is not None:
            objects.append(_distractor(rng, task, objects[0], other, size_name(small, side)))
    return TaskImage(width, height, sample_background(rng), tuple(objects))
