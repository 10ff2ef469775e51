"""A scene written out as one line of text, for measuring whether a language model reads a scene from its context.

The order is reading order (top to bottom, then left to right, by box centre), the order in which a LLaVA's
image tokens arrive; each object is its attributes, its category and its 3x3 grid cell, the words the
SynthWorld questions use ("What color is the star?", "Where is the red hexagon?"):

    Scene: medium yellow star at top; large sign "2Y8" at center; large gray striped pentagon at bottom.
"""

from __future__ import annotations

from trainer.synthworld.scene_view import SceneObject, SceneView
from trainer.synthworld.spatial import grid_position


def object_phrase(obj: SceneObject, width: int, height: int) -> str:
    """``"small red striped hexagon at top left"``; a sign adds its code in quotes after the noun."""
    words = [word for word in (obj.size, obj.color, obj.pattern) if word and word != "plain"]
    words.append(obj.category)
    if obj.text:
        words.append(f'"{obj.text}"')
    return " ".join(words) + " at " + grid_position(obj.bbox, width, height)


def scene_description(view: SceneView) -> str:
    """Every object of ``view`` in reading order, ``"; "``-separated, after ``"Scene: "``."""
    ordered = sorted(view.objects, key=lambda obj: (obj.center[1], obj.center[0]))
    phrases = [object_phrase(obj, view.width, view.height) for obj in ordered]
    return "Scene: " + ("; ".join(phrases) if phrases else "nothing") + "."
