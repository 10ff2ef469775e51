"""Sampling building blocks shared by scenes, the web pool and the tasks: concepts, objects and free boxes."""

from __future__ import annotations

import hashlib
import random

import numpy as np

from trainer.synthworld.concepts import (
    COLORS,
    PATTERN_INK,
    PATTERNS,
    SIGN,
    SIGN_PLATE,
    SIGN_WORDS,
    SIZES,
    Species,
)
from trainer.synthworld.placed import PlacedObject
from trainer.synthworld.render import jitter, sign_size

Box = tuple[int, int, int, int]
# Plain is the most common look; the three patterns share the rest.
_PATTERN_WEIGHTS = (0.55, 0.15, 0.15, 0.15)
# Minimum free pixels between two boxes, so every object is seen on its own.
BOX_GAP = 2


def item_seed(global_seed: int, kind: str, index: int, attempt: int = 0) -> int:
    """A 64-bit seed for one item, from the global seed and the item's identity only (never worker order)."""
    digest = hashlib.sha256(f"synthworld/{global_seed}/{kind}/{index}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Probabilities proportional to 1 / rank**exponent for ranks 1..n."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


def zipf_quota(total: int, n: int, exponent: float) -> list[int]:
    """Split ``total`` into ``n`` Zipf-shaped integer counts (largest remainder), non-increasing by rank."""
    exact = zipf_weights(n, exponent) * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return [int(c) for c in counts]


def random_pattern(rng: random.Random) -> str:
    return rng.choices(PATTERNS, weights=_PATTERN_WEIGHTS)[0]


def size_name(side: int, canvas_side: int) -> str:
    """small / medium / large by the object's longer side relative to the canvas' shorter side."""
    fraction = side / canvas_side
    return SIZES[0] if fraction < 0.21 else SIZES[1] if fraction < 0.31 else SIZES[2]


def shape_object(
    rng: random.Random,
    shape: str,
    bbox: Box,
    size: str,
    color: str,
    pattern: str = "plain",
) -> PlacedObject:
    """An ordinary shape: palette body colour with jitter; pattern marks in near-black ink."""
    return PlacedObject(
        category=shape,
        bbox=bbox,
        size=size,
        body_rgb=jitter(COLORS[color], rng),
        color=color,
        pattern=pattern,
        mark_rgb=PATTERN_INK if pattern != "plain" else None,
    )


def species_object(rng: random.Random, species: Species, bbox: Box, size: str) -> PlacedObject:
    """A species: its shape with its body colour and its pattern drawn in its marking colour."""
    return PlacedObject(
        category=species.shape,
        bbox=bbox,
        size=size,
        body_rgb=jitter(COLORS[species.color], rng, 6),
        color=species.color,
        pattern=species.pattern,
        mark_rgb=jitter(COLORS[species.marking], rng, 6),
        species=species.name,
    )


def random_sign_word(rng: random.Random) -> str:
    """One word of the signs' closed vocabulary (``concepts.SIGN_WORDS``), uniformly."""
    return rng.choice(SIGN_WORDS)


def sign_object(rng: random.Random, text: str, x: int, y: int, scale: int, canvas_side: int) -> PlacedObject:
    w, h = sign_size(text, scale)
    return PlacedObject(
        category=SIGN,
        bbox=(x, y, w, h),
        size=size_name(max(w, h), canvas_side),
        body_rgb=jitter(SIGN_PLATE, rng, 4),
        text=text,
        font_scale=scale,
    )


def _apart(a: Box, b: Box, gap: int) -> bool:
    return (
        a[0] + a[2] + gap <= b[0]
        or b[0] + b[2] + gap <= a[0]
        or a[1] + a[3] + gap <= b[1]
        or b[1] + b[3] + gap <= a[1]
    )


def free_box(
    rng: random.Random, width: int, height: int, w: int, h: int, taken: list[Box], tries: int = 60
) -> Box | None:
    """A ``w`` x ``h`` box inside the canvas at least BOX_GAP pixels from every box in ``taken``, or None."""
    if w > width or h > height:
        return None
    for _ in range(tries):
        box = (rng.randint(0, width - w), rng.randint(0, height - h), w, h)
        if all(_apart(box, other, BOX_GAP) for other in taken):
            return box
    return None
