"""Coverage pictures drawn with PIL (no plotting dependency): the class x class overlap heat map and the
similarity histogram. Deterministic images, so the browser and the tests see the same thing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
GRID = (215, 215, 215)
BAR = (70, 110, 200)
HEAT_LOW, HEAT_HIGH = np.array([245, 248, 255]), np.array([25, 70, 160])
FONT_SIZE = 12
LABEL_CHARS = 12


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def overlap_picture(classes: Sequence[str], overlap: np.ndarray, cell: int = 28) -> Image.Image:
    """Rows and columns are classes; a cell's shade is its count relative to the largest off-diagonal count
    (the diagonal, each class' own size, is drawn grey so that shared pairs stand out)."""
    count = len(classes)
    overlap = np.asarray(overlap)
    if overlap.shape != (count, count):
        raise ValueError(
            f"the overlap matrix is {overlap.shape}, expected ({count}, {count}) for {count} classes"
        )
    if overlap.size and (not np.all(np.isfinite(overlap)) or overlap.min() < 0):
        raise ValueError("overlap counts must be finite and not negative")
    font = _font()
    margin = 8 + 7 * max((len(_short(c)) for c in classes), default=1)
    size = (margin + count * cell + 10, margin + count * cell + 10)
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    off = overlap.copy()
    np.fill_diagonal(off, 0)
    top = max(int(off.max()) if off.size else 0, 1)
    for i in range(count):
        draw.text((4, margin + i * cell + cell // 2), _short(classes[i]), fill=INK, font=font, anchor="lm")
        column = Image.new("RGBA", (margin, cell), (0, 0, 0, 0))
        ImageDraw.Draw(column).text(
            (margin - 4, cell // 2), _short(classes[i]), fill=INK, font=font, anchor="rm"
        )
        rotated = column.rotate(90, expand=True)
        image.paste(rotated, (margin + i * cell, 0), rotated)
        for j in range(count):
            value = int(overlap[i, j])
            if i == j:
                shade = (225, 225, 225)
            else:
                mix = value / top
                shade = tuple(int(c) for c in HEAT_LOW + (HEAT_HIGH - HEAT_LOW) * mix)
            box = (
                margin + j * cell,
                margin + i * cell,
                margin + (j + 1) * cell - 1,
                margin + (i + 1) * cell - 1,
            )
            draw.rectangle(box, fill=shade, outline=GRID)
            if value:
                text_ink = BACKGROUND if i != j and value / top > 0.55 else INK
                center = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
                draw.text(center, str(value), fill=text_ink, font=_font(10), anchor="mm")
    return image


def histogram_picture(
    edges: np.ndarray, counts: np.ndarray, width: int = 520, height: int = 256
) -> Image.Image:
    """Bars of ``counts`` (summed over classes when 2-d) between ``edges``; axis labels at both ends."""
    counts = np.asarray(counts)
    totals = counts.sum(axis=0) if counts.ndim == 2 else counts.reshape(-1)
    if totals.size and (not np.all(np.isfinite(totals)) or totals.min() < 0):
        raise ValueError("histogram counts must be finite and not negative")
    edges = np.asarray(edges, dtype=np.float64).reshape(-1)
    if edges.size < 2:
        raise ValueError(f"a histogram needs at least 2 bin edges, got {edges.size}")
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()
    # top leaves room for the label badge Gradio draws over the image's top-left corner
    left, right, top, bottom = 44, width - 12, 40, height - 34
    draw.line((left, bottom, right, bottom), fill=INK)
    draw.line((left, top, left, bottom), fill=INK)
    peak = max(int(totals.max()) if totals.size else 0, 1)
    for x0, x1, bar_top in bar_boxes(totals, peak, left, right, top, bottom):
        draw.rectangle((x0, bar_top, x1, bottom - 1), fill=BAR)
    draw.text((left - 4, top), str(peak), fill=INK, font=font, anchor="ra")
    draw.text((left - 4, bottom), "0", fill=INK, font=font, anchor="rs")
    draw.text((left, bottom + 4), f"{edges[0]:.3f}", fill=INK, font=font, anchor="la")
    draw.text((right, bottom + 4), f"{edges[-1]:.3f}", fill=INK, font=font, anchor="ra")
    draw.text(
        ((left + right) // 2, bottom + 18), "similarity of retrieved pairs", fill=INK, font=font, anchor="ma"
    )
    return image


def bar_boxes(
    totals: np.ndarray, peak: float, left: int, right: int, top: int, bottom: int
) -> list[tuple[int, int, int]]:
    """(x0, x1, bar_top) in whole pixels for each non-empty bin. Every non-empty bin gets at least one pixel
    in both directions: a bin under 1/(bottom - top) of the peak, or more bins than pixels, once produced
    boxes with the far edge before the near one, which Pillow refuses ("y1 must be greater than or equal
    to y0") and which took the whole retrieval result with it."""
    count = len(totals)
    span = (right - left) / max(count, 1)
    height = bottom - 1 - top
    boxes = []
    for b, value in enumerate(totals.tolist()):
        if value <= 0:
            continue
        x0 = left + 1 + int(b * span)
        x1 = max(x0, left + int((b + 1) * span) - 1)
        bar_top = min(bottom - 1, round(bottom - 1 - height * min(value / peak, 1.0)))
        boxes.append((x0, min(x1, right), bar_top))
    return boxes
