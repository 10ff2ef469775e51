"""WorldConfig: every knob of a SynthWorld generation, with the ``tiny`` (CI) and ``default`` presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

IntRange = tuple[int, int]


@dataclass(frozen=True)
class WorldConfig:
    """What to generate. Presets (``WorldConfig.preset(name)``):

    * ``tiny``: CI-sized; the whole world generates in a few seconds on one core.
    * ``default``: the recipe; about 37k images, generated in under two minutes on two cores.
    * ``simple``: the chat model's world (issue #18's fallback): 1-2 larger objects per regular scene, 1-3
      small things per LARGE scene (the AnyRes small-detail scenes kept), a small pool (the foundation
      models come from ``default``).
    """

    name: str = "custom"
    # Multi-object scenes (COCO-style, captions, eval sets from the test split).
    train_scenes: int = 40
    test_scenes: int = 20
    large_scene_fraction: float = 0.2  # share of scenes that are LARGE (small objects, small-glyph signs)
    scene_size: IntRange = (128, 192)  # side lengths in pixels, drawn per side (so aspect varies)
    large_scene_size: IntRange = (256, 320)
    scene_objects: IntRange = (2, 5)
    # Relative weights of the small / medium / large object sizes in regular scenes.
    regular_size_weights: tuple[float, float, float] = (0.35, 0.4, 0.25)
    large_scene_shapes: IntRange = (3, 6)
    large_scene_signs: IntRange = (1, 2)
    sign_rate: float = 0.3  # chance a regular scene holds one sign
    scene_species_rate: float = 0.12  # chance a shape in a scene is a species
    regular_glyph_scale: int = 3  # font cell size on regular-scene signs (legible at a 64-px tile)
    large_glyph_scale: int = 2  # on LARGE-scene signs: 10x14 px per character, legible only at 128 px
    captions_per_scene: int = 5
    # Web pool (LAION-like).
    pool_size: int = 600
    pool_image_size: IntRange = (64, 128)
    pool_objects: IntRange = (1, 3)
    pool_species_fraction: float = 0.1  # share of pool images whose main object is a species
    species_zipf_exponent: float = 1.4  # rarest of 24 species gets ~0.3% of species images
    concept_zipf_exponent: float = 0.5  # mild long tail over shapes and colours
    pool_mismatch_rate: float = 0.05  # captions taken from another image
    pool_species_named_rate: float = 0.6  # species images whose caption names the species
    # Downstream classification tasks.
    task_images_per_class: int = 8
    task_image_size: IntRange = (64, 128)
    # Eval sets (from test scenes).
    vqa_per_category_per_image: int = 2
    mc_per_image: int = 3
    pope_per_kind: int = 3

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "IntRange":
                if len(value) != 2 or not 0 < value[0] <= value[1]:
                    raise ValueError(f"WorldConfig.{field.name}: need 0 < low <= high, got {value}")
            elif field.type == "float" and not 0.0 <= value <= (
                1.0 if "exponent" not in field.name else 10.0
            ):
                raise ValueError(f"WorldConfig.{field.name}: {value} is out of range")
        for name in (
            "train_scenes",
            "test_scenes",
            "pool_size",
            "task_images_per_class",
            "captions_per_scene",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"WorldConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.large_glyph_scale >= self.regular_glyph_scale:
            raise ValueError(
                "large_glyph_scale must be smaller than regular_glyph_scale (small detail is the point)"
            )
        if self.large_glyph_scale < 1:
            raise ValueError("glyph scales must be positive integers")
        if self.large_scene_size[0] <= self.scene_size[1]:
            raise ValueError(
                "large_scene_size must start above scene_size: LARGE scenes are the high-res ones"
            )
        if (
            len(self.regular_size_weights) != 3
            or min(self.regular_size_weights) < 0
            or not any(self.regular_size_weights)
        ):
            raise ValueError("regular_size_weights: need three non-negative weights, not all zero")
        if self.scene_objects[1] > 8 or self.large_scene_shapes[1] + self.large_scene_signs[1] > 10:
            raise ValueError("too many objects to place without overlap")
        if self.vqa_per_category_per_image < 1 or self.mc_per_image < 1 or self.pope_per_kind < 1:
            raise ValueError("eval-set sizes per image must be at least 1")

    @staticmethod
    def preset(name: str, **overrides: Any) -> WorldConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
        return replace(WorldConfig(name=name, **PRESETS[name]), **overrides)

    def to_json(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"train_scenes": 40, "test_scenes": 20, "pool_size": 600, "task_images_per_class": 8},
    "default": {"train_scenes": 5000, "test_scenes": 400, "pool_size": 30000, "task_images_per_class": 40},
    "simple": {
        "train_scenes": 5000,
        "test_scenes": 400,
        "pool_size": 2000,
        "task_images_per_class": 8,
        "scene_objects": (1, 2),
        "regular_size_weights": (0.1, 0.4, 0.5),
        "large_scene_shapes": (1, 3),
        "large_scene_signs": (1, 1),
    },
}
