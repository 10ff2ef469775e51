"""Drawing: seeded backgrounds, shapes with pattern fills, signs with bitmap-font codes, and PNG encoding.

Pure functions of their arguments (all randomness comes in through an explicit ``random.Random``), so the
same seed gives the same pixels and, with a fixed compression level and no metadata, the same PNG bytes.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from trainer.synthworld import bitmap_font
from trainer.synthworld.concepts import SIGN, SIGN_INK
from trainer.synthworld.geometry import box_parts
from trainer.synthworld.placed import RGB, PlacedObject

# Fixed so PNG bytes never depend on library defaults; 1 keeps the default world fast to write.
PNG_COMPRESS_LEVEL = 1
BACKGROUND_KINDS: tuple[str, ...] = ("flat", "gradient", "texture", "grain")
_BACKGROUND_WEIGHTS = (0.35, 0.3, 0.25, 0.1)
# Backgrounds are low-saturation so no background reads as a palette colour; some are dark for variety.
_DARK_BACKGROUND_RATE = 0.2
_SIGN_BORDER = (95, 95, 100)


def jitter(rgb: RGB, rng: random.Random, amount: int = 10) -> RGB:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


@dataclass(frozen=True)
class Background:
    kind: str
    base: RGB
    other: RGB  # second gradient colour (unused by other kinds)
    angle: float  # gradient direction in radians
    noise_seed: int  # seeds texture/grain noise

    def __post_init__(self) -> None:
        if self.kind not in BACKGROUND_KINDS:
            raise ValueError(f"unknown background kind {self.kind!r}; known: {BACKGROUND_KINDS}")

    @property
    def is_dark(self) -> bool:
        return sum(self.base) < 3 * 128


def _muted(rng: random.Random, dark: bool) -> RGB:
    level = rng.randint(35, 75) if dark else rng.randint(190, 240)
    return jitter((level, level, level), rng, 12)


def sample_background(rng: random.Random) -> Background:
    kind = rng.choices(BACKGROUND_KINDS, weights=_BACKGROUND_WEIGHTS)[0]
    dark = rng.random() < _DARK_BACKGROUND_RATE
    return Background(
        kind, _muted(rng, dark), _muted(rng, dark), rng.uniform(0, 2 * np.pi), rng.getrandbits(32)
    )


def render_background(background: Background, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 background pixels."""
    base = np.asarray(background.base, dtype=np.float32)
    pixels = np.broadcast_to(base, (height, width, 3)).copy()
    noise = np.random.default_rng(background.noise_seed)
    if background.kind == "gradient":
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = xs * np.cos(background.angle) + ys * np.sin(background.angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        pixels = base + t[..., None] * (np.asarray(background.other, dtype=np.float32) - base)
    elif background.kind == "texture":
        # Low-frequency blotches: a coarse random grid upsampled smoothly, like paper or fabric.
        # Mostly lightness variation with a faint tint, so the background never reads as a palette colour.
        grid = (int(noise.integers(3, 8)), int(noise.integers(3, 8)))
        cells = noise.uniform(-16, 16, size=(*grid, 1)) + noise.uniform(-5, 5, size=(*grid, 3))
        coarse = Image.fromarray((cells + 128).astype(np.uint8), "RGB").resize(
            (width, height), Image.BILINEAR
        )
        pixels = pixels + np.asarray(coarse, dtype=np.float32) - 128
    elif background.kind == "grain":
        pixels = pixels + noise.normal(0, 5, size=(height, width, 1))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def shape_mask(shape: str, width: int, height: int) -> Image.Image:
    """'L' mask (255 inside) of ``shape`` filling a ``width`` x ``height`` tile."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for polygon, filled in box_parts(shape, width, height):
        draw.polygon(polygon, fill=255 if filled else 0)
    return mask


def _draw_pattern(tile: Image.Image, pattern: str, ink: RGB, bold: bool) -> None:
    draw = ImageDraw.Draw(tile)
    width, height = tile.size
    side = min(width, height)
    if pattern == "striped":
        period = max(4, round(side / 5))
        line = max(1, round(period * (0.33 if bold else 0.25)))
        for k in range(0, width + height, period):
            draw.line((k, 0, k - height, height), fill=ink, width=line)
    elif pattern == "dotted":
        period = max(4, round(side / 4))
        radius = max(1.0, period * (0.28 if bold else 0.22))
        for cy in range(period // 2, height, period):
            for cx in range(period // 2, width, period):
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=ink)
    elif pattern == "checkered":
        cell = max(2, round(side / 5))
        for row, y in enumerate(range(0, height, cell)):
            for col, x in enumerate(range(0, width, cell)):
                if (row + col) % 2:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=ink)
    elif pattern != "plain":
        raise ValueError(f"unknown pattern {pattern!r}")


def sign_size(text: str, scale: int) -> tuple[int, int]:
    """Plate (width, height) for ``text`` at glyph ``scale``: text plus a margin of two font cells."""
    text_w, text_h = bitmap_font.text_size(text, scale)
    return text_w + 4 * scale, text_h + 4 * scale


def sign_text_origin(bbox: tuple[int, int, int, int], scale: int) -> tuple[int, int]:
    """Top-left pixel of the first glyph on a sign drawn in ``bbox``."""
    return bbox[0] + 2 * scale, bbox[1] + 2 * scale


def _draw_sign(canvas: Image.Image, obj: PlacedObject) -> None:
    x, y, w, h = obj.bbox
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((x, y, x + w - 1, y + h - 1), fill=obj.body_rgb, outline=_SIGN_BORDER)
    assert obj.text is not None and obj.font_scale is not None  # guaranteed by PlacedObject
    ink = bitmap_font.text_mask(obj.text, obj.font_scale)
    tx, ty = sign_text_origin(obj.bbox, obj.font_scale)
    mask = Image.fromarray(ink.astype(np.uint8) * 255, "L")
    canvas.paste(SIGN_INK, (tx, ty, tx + ink.shape[1], ty + ink.shape[0]), mask)


def draw_object(canvas: Image.Image, obj: PlacedObject) -> None:
    """Draw ``obj`` onto ``canvas`` in place, covering exactly its box's extent."""
    if obj.category == SIGN:
        _draw_sign(canvas, obj)
        return
    x, y, w, h = obj.bbox
    tile = Image.new("RGB", (w, h), obj.body_rgb)
    if obj.pattern not in (None, "plain") and obj.mark_rgb is not None:
        _draw_pattern(tile, obj.pattern, obj.mark_rgb, bold=obj.species is not None)
    canvas.paste(tile, (x, y), shape_mask(obj.category, w, h))


def render_image(
    width: int, height: int, background: Background, objects: tuple[PlacedObject, ...] | list[PlacedObject]
) -> Image.Image:
    canvas = Image.fromarray(render_background(background, width, height), "RGB")
    for obj in objects:
        draw_object(canvas, obj)
    return canvas


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with a fixed compression level and no metadata chunks: identical for identical pixels."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()
