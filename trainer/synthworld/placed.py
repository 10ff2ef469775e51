"""A placed object: everything needed to draw, annotate, caption and question one object in an image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.synthworld.concepts import SHAPES, SIGN, SIZES
from trainer.synthworld.scene_view import SceneObject, SceneView

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class PlacedObject:
    category: str  # a shape name or "sign"
    bbox: tuple[int, int, int, int]  # x, y, w, h in pixels; the drawn pixels fill it exactly
    size: str
    body_rgb: RGB  # shape fill, or the sign's plate
    color: str | None = None  # palette name of body_rgb; None for signs
    pattern: str | None = None  # None for signs
    mark_rgb: RGB | None = None  # colour of pattern marks (near-black ink, or a species' marking colour)
    species: str | None = None
    text: str | None = None  # sign code
    font_scale: int | None = None  # sign glyph scale: each font cell is font_scale x font_scale pixels

    def __post_init__(self) -> None:
        if self.category not in (*SHAPES, SIGN):
            raise ValueError(f"unknown category {self.category!r}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}")
        if (self.category == SIGN) != (self.text is not None and self.font_scale is not None):
            raise ValueError("signs, and only signs, carry text and a font scale")
        if min(self.bbox[2], self.bbox[3]) < 1:
            raise ValueError(f"empty box {self.bbox}")

    def attributes(self) -> dict[str, Any]:
        """The COCO annotation's "attributes" dict (the layout contract in docs/synthworld.md)."""
        return {
            "shape": self.category if self.category != SIGN else None,
            "color": self.color,
            "pattern": self.pattern,
            "size": self.size,
            "text": self.text,
            "species": self.species,
        }

    def scene_object(self) -> SceneObject:
        return SceneObject(
            category=self.category,
            bbox=tuple(float(v) for v in self.bbox),  # type: ignore[arg-type]
            color=self.color,
            pattern=self.pattern,
            size=self.size,
            text=self.text,
            species=self.species,
        )

    def truth(self) -> dict[str, Any]:
        """Plain-JSON record of the object (pool ground truth)."""
        return {"category": self.category, "bbox": list(self.bbox), **self.attributes()}


def scene_view(width: int, height: int, objects: tuple[PlacedObject, ...] | list[PlacedObject]) -> SceneView:
    return SceneView(width=width, height=height, objects=tuple(obj.scene_object() for obj in objects))
