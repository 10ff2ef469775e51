"""The symbolic image representation sent to a text-only teacher (LLaVA Sec. 3.3).

LLaVA gives GPT-4 the captions and every box as ``category: [x1, y1, x2, y2]`` with coordinates normalised
to [0, 1]. We write 3 decimals and, for SynthWorld, add the known attributes after the box so the teacher can
talk about colour, pattern, size, sign text and species; real COCO boxes carry none and stay bare.
"""

from __future__ import annotations

from trainer.data_engine.teachers import TeacherContext
from trainer.synthworld.questions import SceneObject


def normalised_box(
    bbox: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` in pixels -> ``(x1, y1, x2, y2)`` as fractions of the image, clamped to [0, 1]."""
    x, y, w, h = bbox

    def clamp(value: float) -> float:
        return min(1.0, max(0.0, value))

    return clamp(x / width), clamp(y / height), clamp((x + w) / width), clamp((y + h) / height)


def format_box(box: tuple[float, float, float, float]) -> str:
    return "[" + ", ".join(f"{value:.3f}" for value in box) + "]"


def attribute_note(obj: SceneObject) -> str:
    """``"large red striped, species vorn"``-style note; empty for objects without attributes (real COCO)."""
    looks = " ".join(v for v in (obj.size, obj.color, obj.pattern) if v)
    parts = [looks] if looks else []
    if obj.species:
        parts.append(f"species {obj.species}")
    if obj.text:
        parts.append(f'text "{obj.text}"')
    if obj.crowd:
        parts.append("a crowd of several")
    return ", ".join(parts)


def box_line(obj: SceneObject, width: int, height: int) -> str:
    line = f"{obj.category}: {format_box(normalised_box(obj.bbox, width, height))}"
    note = attribute_note(obj)
    return f"{line} ({note})" if note else line


def symbolic_context(context: TeacherContext) -> str:
    """Captions, one per line, then one box line per object, in annotation order."""
    lines = ["Captions:"]
    lines += [caption for caption in context.captions] or ["(none)"]
    lines.append("")
    lines.append("Objects (category: [x1, y1, x2, y2], fractions of image width/height from the top left):")
    objects = context.scene.objects
    lines += [box_line(obj, context.width, context.height) for obj in objects] or ["(none)"]
    return "\n".join(lines)
