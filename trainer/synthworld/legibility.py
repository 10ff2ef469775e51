"""Measuring whether a sign's word survives downscaling (backs the small-detail promise of eval/detail.jsonl).

Criterion: **stroke contrast**. Downscale the whole image (bicubic, longer side -> ``target``), then sample
it at the centres of every 5x7 font cell of each glyph (mapped into the small image, bilinear). The glyph's
stroke contrast is (mean of gap cells - mean of ink cells) / (plate - ink brightness): 1 when strokes and gaps
keep their full brightness, 0 when the glyph has blurred into a uniform grey blob. Text needs its strokes to
stand out from the gaps between them, so a glyph whose contrast falls near 0 cannot be read however good the
reader; thresholds are in ``LEGIBLE_CONTRAST`` / ``ILLEGIBLE_CONTRAST``.

A second, stricter-to-pass check is a template reader that knows the font and the exact glyph positions and
picks the best-correlating character at the same sample points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from trainer.synthworld import bitmap_font
from trainer.synthworld.concepts import SIGN_INK, SIGN_PLATE, SIGN_WORD_LETTERS
from trainer.synthworld.render import sign_text_origin

LEGIBLE_CONTRAST = 0.25  # mean stroke contrast at or above this: strokes clearly separate from gaps
ILLEGIBLE_CONTRAST = 0.12  # at or below this: strokes have merged with the gaps

_FULL_RANGE = float(np.mean(SIGN_PLATE) - np.mean(SIGN_INK))


@dataclass(frozen=True)
class GlyphReading:
    char: str
    contrast: float  # stroke contrast as defined above
    read_as: str  # the template reader's best guess


def downscale(image: Image.Image, target: int) -> tuple[np.ndarray, float]:
    """Grey pixels of ``image`` resized so its longer side is ``target``, and the scale factor used."""
    factor = target / max(image.size)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return np.asarray(image.convert("RGB").resize(size, Image.BICUBIC).convert("L"), dtype=np.float64), factor


def _bilinear(grey: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    height, width = grey.shape
    xs, ys = np.clip(xs, 0, width - 1), np.clip(ys, 0, height - 1)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = xs - x0, ys - y0
    top = grey[y0, x0] * (1 - fx) + grey[y0, x1] * fx
    bottom = grey[y1, x0] * (1 - fx) + grey[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _centred(vector: np.ndarray) -> np.ndarray:
    vector = vector - vector.mean()
    return vector / (np.linalg.norm(vector) + 1e-9)


def read_sign(
    image: Image.Image, bbox: tuple[int, int, int, int], text: str, scale: int, target: int
) -> list[GlyphReading]:
    """Stroke contrast and template reading of each glyph of the sign at ``bbox`` after downscaling."""
    grey, factor = downscale(image, target)
    tx, ty = sign_text_origin(bbox, scale)
    templates = {
        char: _centred(bitmap_font.glyph(char).astype(np.float64).ravel()) for char in SIGN_WORD_LETTERS
    }
    readings = []
    for index, char in enumerate(text):
        left = tx + bitmap_font.char_origin(index, scale)
        cols = left + (np.arange(bitmap_font.GLYPH_WIDTH) + 0.5) * scale
        rows = ty + (np.arange(bitmap_font.GLYPH_HEIGHT) + 0.5) * scale
        xs, ys = np.meshgrid(cols * factor - 0.5, rows * factor - 0.5)  # pixel centres in the small image
        samples = _bilinear(grey, xs.ravel(), ys.ravel())
        ink = bitmap_font.glyph(char).ravel()
        contrast = float((samples[~ink].mean() - samples[ink].mean()) / _FULL_RANGE)
        darkness = _centred(-samples)  # ink is dark, templates mark ink with 1
        read_as = max(SIGN_WORD_LETTERS, key=lambda candidate: float(darkness @ templates[candidate]))
        readings.append(GlyphReading(char, contrast, read_as))
    return readings
