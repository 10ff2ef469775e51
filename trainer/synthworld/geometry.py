"""Outlines of the ten shapes as polygons in the unit box, so drawn objects fill their COCO box exactly.

Each shape is a list of (polygon, filled) parts: filled parts are drawn first, then holes (filled=False) are
cut out (the ring's centre). Every outline is normalised so its extreme points touch all four sides of
[0, 1] x [0, 1]; scaling to a w x h box then gives a tight bounding box by construction.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from trainer.synthworld.concepts import SHAPES

Polygon = tuple[tuple[float, float], ...]
Part = tuple[Polygon, bool]

_CIRCLE_POINTS = 48
# Ring hole radius relative to the outer radius: thick enough to stay visible on small objects.
_RING_HOLE = 0.55
# Crescent: the bite is a circle of radius 0.8 whose centre sits 0.5 to the right of the body's centre.
_CRESCENT_BITE_RADIUS = 0.8
_CRESCENT_BITE_OFFSET = 0.5
_STAR_INNER = 0.42
_CROSS_ARM = 1.0 / 3.0


def _regular(n: int, start_deg: float, radius: float = 1.0) -> list[tuple[float, float]]:
    step = 2.0 * math.pi / n
    start = math.radians(start_deg)
    return [(radius * math.cos(start + i * step), radius * math.sin(start + i * step)) for i in range(n)]


def _arc(cx: float, r: float, a0: float, a1: float, n: int) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(a0 + (a1 - a0) * i / n), r * math.sin(a0 + (a1 - a0) * i / n))
        for i in range(n + 1)
    ]


def _star() -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = 1.0 if i % 2 == 0 else _STAR_INNER
        angle = math.radians(-90 + 36 * i)
        points.append((radius * math.cos(angle), radius * math.sin(angle)))
    return points


def _crescent() -> list[tuple[float, float]]:
    d, r2 = _CRESCENT_BITE_OFFSET, _CRESCENT_BITE_RADIUS
    # Intersection of the unit circle with the bite circle centred at (d, 0).
    x = (1.0 - r2 * r2 + d * d) / (2.0 * d)
    y = math.sqrt(1.0 - x * x)
    outer_start = math.atan2(-y, x)  # upper tip (image y grows downwards)
    outer = _arc(0.0, 1.0, outer_start + 2 * math.pi, -outer_start, 40)  # round the left side
    inner_start = math.atan2(y, x - d)
    inner = _arc(d, r2, inner_start, 2 * math.pi - inner_start, 40)  # back along the bite's left side
    return outer + inner


def _raw_parts(shape: str) -> list[tuple[list[tuple[float, float]], bool]]:
    a = _CROSS_ARM
    table = {
        "circle": [(_regular(_CIRCLE_POINTS, 0), True)],
        "square": [([(0, 0), (1, 0), (1, 1), (0, 1)], True)],
        "triangle": [([(0.5, 0), (1, 1), (0, 1)], True)],
        "star": [(_star(), True)],
        "hexagon": [(_regular(6, 0), True)],
        "diamond": [([(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)], True)],
        "cross": [
            (
                [
                    (a, 0),
                    (1 - a, 0),
                    (1 - a, a),
                    (1, a),
                    (1, 1 - a),
                    (1 - a, 1 - a),
                    (1 - a, 1),
                    (a, 1),
                    (a, 1 - a),
                    (0, 1 - a),
                    (0, a),
                    (a, a),
                ],
                True,
            ),
        ],  # fmt: skip
        "ring": [(_regular(_CIRCLE_POINTS, 0), True), (_regular(_CIRCLE_POINTS, 0, _RING_HOLE), False)],
        "pentagon": [(_regular(5, -90), True)],
        "crescent": [(_crescent(), True)],
    }
    if shape not in table:
        raise ValueError(f"unknown shape {shape!r}; known: {sorted(table)}")
    return table[shape]


def _normalised_parts(shape: str) -> tuple[Part, ...]:
    parts = _raw_parts(shape)
    xs = [x for polygon, filled in parts if filled for x, _ in polygon]
    ys = [y for polygon, filled in parts if filled for _, y in polygon]
    x0, y0 = min(xs), min(ys)
    sx, sy = max(xs) - x0, max(ys) - y0
    return tuple(
        (tuple(((x - x0) / sx, (y - y0) / sy) for x, y in polygon), filled) for polygon, filled in parts
    )


# Computed once at import: a read-only table, not mutable state.
_UNIT_PARTS = MappingProxyType({shape: _normalised_parts(shape) for shape in SHAPES})


def unit_parts(shape: str) -> tuple[Part, ...]:
    """The shape's parts normalised to the unit box."""
    if shape not in _UNIT_PARTS:
        raise ValueError(f"unknown shape {shape!r}; known: {list(SHAPES)}")
    return _UNIT_PARTS[shape]


def box_parts(shape: str, width: int, height: int) -> list[tuple[list[tuple[float, float]], bool]]:
    """Parts in pixel coordinates of a ``width`` x ``height`` tile: extremes land on pixel 0 and size-1."""
    return [
        ([(x * (width - 1), y * (height - 1)) for x, y in polygon], filled)
        for polygon, filled in unit_parts(shape)
    ]
