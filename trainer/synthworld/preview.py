"""A contact sheet of a generated world (scenes, LARGE scenes, pool images, task images) for the docs."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

_ROW_HEIGHT = 128
_GAP = 4
_WIDTH = 1024


def _row(paths: list[Path], height: int | None) -> Image.Image:
    """Images side by side, scaled to ``height`` (None: native size, top-aligned)."""
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    row_height = height or max(image.height for image in images)
    row = Image.new("RGB", (_WIDTH, row_height), (255, 255, 255))
    x = 0
    for image in images:
        scaled = image
        if height is not None:
            scaled = image.resize((max(1, round(image.width * height / image.height)), height), Image.NEAREST)
        if x + scaled.width > _WIDTH:
            break
        row.paste(scaled, (x, 0))
        x += scaled.width + _GAP
    return row


def contact_sheet(world: str | Path) -> Image.Image:
    """Rows: regular train scenes, LARGE train scenes (full size), pool images, species task images."""
    world = Path(world)
    coco = json.loads((world / "scenes/annotations/instances_train.json").read_text())
    folder = world / "scenes/images/train"
    regular = [folder / im["file_name"] for im in coco["images"] if not im["large_scene"]][:8]
    large = [folder / im["file_name"] for im in coco["images"] if im["large_scene"]][:3]
    pool = sorted((world / "pool/images").glob("*.png"))[:14]
    species = sorted((world / "tasks/species/images").glob("*_00000.png"))[:14]
    rows = [
        ("train scenes", _row(regular, _ROW_HEIGHT)),
        ("LARGE scenes, 1:1 pixels", _row(large, None)),
        ("web pool", _row(pool, 72)),
        ("species task (one per class)", _row(species, 72)),
    ]
    height = sum(row.height + 18 for _, row in rows)
    sheet = Image.new("RGB", (_WIDTH, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for title, row in rows:
        draw.text((2, y + 3), title, fill=(0, 0, 0))
        sheet.paste(row, (0, y + 16))
        y += row.height + 18
    return sheet
