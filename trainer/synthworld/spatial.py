"""Spatial words for objects: 3x3 grid positions and pairwise relations, plus when they are unambiguous."""

from __future__ import annotations

from dataclasses import dataclass

from trainer.synthworld.scene_view import SceneObject

Box = tuple[float, float, float, float]

_ROWS = ("top", "", "bottom")
_COLS = ("left", "", "right")
GRID_POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right",
)  # fmt: skip
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

# A centre within this fraction of the image size from a third-line could be read either way by a person,
# so such objects get no position question and no position-based reference.
GRID_MARGIN = 0.05


def _cell_name(row: int, col: int) -> str:
    words = [word for word in (_ROWS[row], _COLS[col]) if word]
    return " ".join(words) or "center"


def _band(value: float, extent: float) -> int:
    return min(2, max(0, int(3.0 * value / extent)))


def grid_position(bbox: Box, width: int, height: int) -> str:
    """Cell of the 3x3 grid holding the box centre: "top left", "top", ..., "center", ..., "bottom right"."""
    x, y, w, h = bbox
    return _cell_name(_band(y + h / 2.0, height), _band(x + w / 2.0, width))


def _fuzzy_bands(value: float, extent: float) -> frozenset[int]:
    """Every band whose edges, widened by the margin, contain ``value``: one band when clear, two near a line."""
    margin = GRID_MARGIN * extent
    return frozenset(b for b in range(3) if b * extent / 3 - margin <= value < (b + 1) * extent / 3 + margin)


@dataclass(frozen=True)
class Region:
    """A part of the image a phrase names: rows and columns it covers, and the words for it."""

    rows: frozenset[int]
    cols: frozenset[int]
    answer: str  # the grid-position answer, e.g. "top left"
    phrase: str  # how a reference says it, e.g. "in the top left" / "on the left"


def clear_region(obj: SceneObject, width: int, height: int) -> Region | None:
    """The grid region of ``obj`` when its centre is clearly inside one cell, else None.

    Edge cells are phrased as whole sides ("on the left" covers the left column) because that is how people
    read them, so the region of an edge-middle cell is the whole side."""
    cx, cy = obj.center
    rows, cols = _fuzzy_bands(cy, height), _fuzzy_bands(cx, width)
    if len(rows) != 1 or len(cols) != 1:
        return None
    (row,), (col,) = rows, cols
    answer = _cell_name(row, col)
    every = frozenset(range(3))
    if row == 1 and col == 1:
        return Region(rows, cols, answer, "in the center")
    if row == 1:
        return Region(every, cols, answer, f"on the {answer}")
    if col == 1:
        return Region(rows, every, answer, f"at the {answer}")
    return Region(rows, cols, answer, f"in the {answer}")


def may_be_in_region(obj: SceneObject, region: Region, width: int, height: int) -> bool:
    """True when a reader could place ``obj`` in ``region`` (its fuzzy cell overlaps the region)."""
    cx, cy = obj.center
    return bool(_fuzzy_bands(cy, height) & region.rows) and bool(_fuzzy_bands(cx, width) & region.cols)


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is relative to ``b`` along the axis of larger centre offset: left of/right of/above/below."""
    (ax, ay), (bx, by) = a.center, b.center
    dx, dy = ax - bx, ay - by
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _overlap(lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> bool:
    return lo_a < hi_b and lo_b < hi_a


def clear_relation(a: SceneObject, b: SceneObject) -> str | None:
    """``relation(a, b)`` when exactly one relation word is true: the boxes are apart along one axis and
    overlap along the other. Diagonal pairs ("left of" and "above" both true) give None."""
    ax, ay, aw, ah = a.bbox
    bx, by, bw, bh = b.bbox
    apart_x = not _overlap(ax, ax + aw, bx, bx + bw)
    apart_y = not _overlap(ay, ay + ah, by, by + bh)
    if apart_x == apart_y:
        return None
    return relation(a, b) if (relation(a, b) in ("left of", "right of")) == apart_x else None
