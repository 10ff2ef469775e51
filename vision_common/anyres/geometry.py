"""AnyRes geometry and token arithmetic (LLaVA-1.6 / LLaVA-NeXT), as pure functions.

Conventions, used everywhere in this module (and printed by the CLI):

* an image size or a pinpoint (candidate canvas) is ``Size(width, height)``: **W first**, as LLaVA's
  ``mm_utils.py`` reads ``image_grid_pinpoints``. transformers' ``LlavaNextConfig`` stores the same list as
  ``[height, width]`` pairs; :meth:`AnyResConfig.from_transformers` and :func:`transformers_pinpoints` swap
  each pair so the candidate geometry and order stay identical (order matters: exact ties go to the first
  listed candidate).
* a tile grid is ``Grid(cols, rows)``; tiles are numbered row-major, like ``divide_to_patches``.
* a feature map is ``FeatureShape(height, width)`` in vision-patch cells, i.e. tensor order (rows first).
* boxes are ``Box(left, top, right, bottom)`` in canvas pixels, right/bottom exclusive.

The arithmetic mirrors transformers 5.x exactly (``select_best_resolution``, ``get_patch_output_size``,
``unpad_image`` and ``LlavaNextProcessor._get_number_of_features``), including the float expressions whose
rounding decides edge cases; see docs/anyres.md. Run ``python -m llava_demo.anyres --help`` for the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# LLaVA-1.6 candidate grids as (cols, rows) multiples of the tile; 336 * these = the published pinpoints
# (336,672), (672,336), (672,672), (1008,336), (336,1008) read as (W, H).
LLAVA_1_6_GRIDS: tuple[tuple[int, int], ...] = ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))
# LLaVA-1.5-HD grids from the dissertation: {2x2, 1x{2,3,4}, {2,3,4}x1}, written (cols, rows).
DISSERTATION_GRIDS: tuple[tuple[int, int], ...] = ((2, 2), (1, 2), (1, 3), (1, 4), (2, 1), (3, 1), (4, 1))
STRATEGIES = ("default", "full")


class Size(NamedTuple):
    width: int
    height: int


class Grid(NamedTuple):
    cols: int
    rows: int


class FeatureShape(NamedTuple):
    height: int
    width: int


class Box(NamedTuple):
    left: int
    top: int
    right: int
    bottom: int


@dataclass(frozen=True)
class AnyResConfig:
    """Tile size, ViT patch size and candidate canvases (``pinpoints``, each (W, H) in pixels).

    Defaults are LLaVA-1.6 with CLIP ViT-L/14-336: 24x24 = 576 patches per tile, at most 2,928 image tokens.
    """

    tile: int = 336
    patch: int = 14
    pinpoints: tuple[tuple[int, int], ...] = tuple((c * 336, r * 336) for c, r in LLAVA_1_6_GRIDS)

    def __post_init__(self) -> None:
        for name in ("tile", "patch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"AnyResConfig.{name} must be a positive integer, got {value!r}")
        if self.tile % self.patch:
            raise ValueError(f"AnyResConfig.tile ({self.tile}) must be a multiple of patch ({self.patch})")
        # Accept lists (JSON, transformers configs) but store hashable tuples so the config stays frozen.
        pinpoints = tuple(_as_pair(p, "AnyResConfig.pinpoints") for p in self.pinpoints)
        object.__setattr__(self, "pinpoints", pinpoints)
        if not pinpoints:
            raise ValueError("AnyResConfig.pinpoints must list at least one (width, height) canvas")
        for width, height in pinpoints:
            if width % self.tile or height % self.tile:
                raise ValueError(
                    f"AnyResConfig.pinpoints: {width}x{height} (WxH) is not a multiple of tile {self.tile}"
                )
        duplicates = sorted({p for p in pinpoints if pinpoints.count(p) > 1})
        if duplicates:
            raise ValueError(f"AnyResConfig.pinpoints lists {duplicates[0][0]}x{duplicates[0][1]} twice")

    @property
    def patches_per_side(self) -> int:
        return self.tile // self.patch

    @classmethod
    def llava_1_6(cls, tile: int = 336, patch: int = 14) -> AnyResConfig:
        """LLaVA-1.6 grids scaled to ``tile`` (the SigLIP variants multiply each side by tile/336)."""
        return cls(tile=tile, patch=patch, pinpoints=tuple((c * tile, r * tile) for c, r in LLAVA_1_6_GRIDS))

    @classmethod
    def dissertation_grids(cls, tile: int = 336, patch: int = 14) -> AnyResConfig:
        """LLaVA-1.5-HD grids {2x2, 1x{2,3,4}, {2,3,4}x1} (cols x rows); up to 4 tiles, 1 + 4 crops."""
        return cls(
            tile=tile, patch=patch, pinpoints=tuple((c * tile, r * tile) for c, r in DISSERTATION_GRIDS)
        )

    @classmethod
    def tiny(cls) -> AnyResConfig:
        """LLaVA-1.6 grids at tile 32 / patch 8 (4x4 = 16 patches per tile), for in-process test models.

        Expected: a 32x32 image picks 32x64 (first tie), unpads to 4x4 and takes 16 + 4 * 5 = 36 tokens.
        """
        return cls.llava_1_6(tile=32, patch=8)

    @classmethod
    def from_transformers(cls, config: Any) -> AnyResConfig:
        """Build from a transformers ``LlavaNextConfig`` (or its ``config.json`` dict).

        transformers stores pinpoints as [height, width]; they are swapped into (W, H) in the same order, and
        tile/patch come from the vision config's ``image_size`` / ``patch_size``.
        """
        get = (
            config.get
            if isinstance(config, dict)
            else lambda key, default=None: getattr(config, key, default)
        )
        vision = get("vision_config")
        vget = (
            vision.get
            if isinstance(vision, dict)
            else lambda key, default=None: getattr(vision, key, default)
        )
        pinpoints_hw = get("image_grid_pinpoints")
        if vision is None or pinpoints_hw is None:
            raise ValueError("transformers config needs 'vision_config' and 'image_grid_pinpoints'")
        pairs = [_as_pair(p, "image_grid_pinpoints") for p in pinpoints_hw]
        return cls(
            tile=vget("image_size"), patch=vget("patch_size"), pinpoints=tuple((w, h) for h, w in pairs)
        )


def transformers_pinpoints(cfg: AnyResConfig) -> list[list[int]]:
    """``image_grid_pinpoints`` for transformers ([height, width] pairs, same order as ``cfg.pinpoints``)."""
    return [[height, width] for width, height in cfg.pinpoints]


def transformers_image_processor_kwargs(cfg: AnyResConfig) -> dict[str, Any]:
    """Keyword arguments that make ``LlavaNextImageProcessor`` tile exactly like ``cfg``."""
    return {
        "size": {"shortest_edge": cfg.tile},
        "crop_size": {"height": cfg.tile, "width": cfg.tile},
        "image_grid_pinpoints": transformers_pinpoints(cfg),
    }


def _as_pair(value: Any, what: str) -> tuple[int, int]:
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a pair of positive integers, got {value!r}") from None
    for item in (first, second):
        if isinstance(item, bool) or not isinstance(item, int) or item <= 0:
            raise ValueError(f"{what}: expected a pair of positive integers, got {value!r}")
    return first, second


def _image_size(size: Sequence[int]) -> Size:
    return Size(*_as_pair(size, "image size (width, height)"))


def select_best_resolution(size: Sequence[int], pinpoints: Iterable[Sequence[int]]) -> Size:
    """The LLaVA rule: maximise effective pixels min(fit area, original area), then minimise waste.

    ``size`` and every pinpoint are (W, H). Comparisons are strict, so on an exact tie the first listed
    candidate wins (a 336x336 image picks 336x672 under LLaVA-1.6). The float expressions are those of
    transformers' ``select_best_resolution`` so truncation agrees bit for bit.
    """
    width, height = _image_size(size)
    best: Size | None = None
    best_effective, best_waste = 0, float("inf")
    for cand_w, cand_h in pinpoints:
        scale = min(cand_w / width, cand_h / height)
        fit_w, fit_h = int(width * scale), int(height * scale)
        effective = min(fit_w * fit_h, width * height)  # upscaling earns nothing
        waste = cand_w * cand_h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = Size(cand_w, cand_h), effective, waste
    if best is None:
        raise ValueError("select_best_resolution: no pinpoints given")
    return best


def resized_size_for_fit(size: Sequence[int], target: Sequence[int]) -> Size:
    """Size of the image scaled to fit ``target`` (both (W, H)) keeping aspect ratio.

    The limiting side is filled exactly; the other is ``ceil``-ed and capped (transformers
    ``get_patch_output_size``), so it is never 0 even for a 1x4000 image.
    """
    width, height = _image_size(size)
    target_w, target_h = _as_pair(target, "target (width, height)")
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return Size(target_w, min(math.ceil(height * scale_w), target_h))
    return Size(min(math.ceil(width * scale_h), target_w), target_h)


def content_box(resized: Sequence[int], canvas: Sequence[int]) -> Box:
    """Where the resized image is pasted on the black canvas: centred, odd remainder to the right/bottom."""
    (res_w, res_h), (can_w, can_h) = resized, canvas
    left, top = (can_w - res_w) // 2, (can_h - res_h) // 2
    return Box(left, top, left + res_w, top + res_h)


def grid_shape(size: Sequence[int], cfg: AnyResConfig) -> Grid:
    """Tile grid (cols, rows) of the canvas chosen for an image of ``size`` (W, H)."""
    best = select_best_resolution(size, cfg.pinpoints)
    return Grid(best.width // cfg.tile, best.height // cfg.tile)


def tile_boxes(grid: Grid, tile: int) -> tuple[Box, ...]:
    """Canvas boxes of the tiles, row-major (the order the encoder sees them after the base image)."""
    return tuple(
        Box(col * tile, row * tile, (col + 1) * tile, (row + 1) * tile)
        for row in range(grid.rows)
        for col in range(grid.cols)
    )


def unpadded_feature_shape(size: Sequence[int], grid: Sequence[int], patches_per_side: int) -> FeatureShape:
    """Feature map (height, width) left after removing the letterbox rows/columns.

    The grid's map is (rows * p) x (cols * p) cells with p = ``patches_per_side``. Arithmetic is that of
    transformers ``unpad_image``: ``int(round(x, 7))`` for the content extent, then an equal number of cells
    (floor of half the slack) removed on each side.
    """
    width, height = _image_size(size)
    cols, rows = _as_pair(grid, "grid (cols, rows)")
    cur_h, cur_w = rows * patches_per_side, cols * patches_per_side
    if width / height > cur_w / cur_h:
        content_h = int(round(height * (cur_w / width), 7))
        cur_h -= 2 * ((cur_h - content_h) // 2)
    else:
        content_w = int(round(width * (cur_h / height), 7))
        cur_w -= 2 * ((cur_w - content_w) // 2)
    return FeatureShape(cur_h, cur_w)


@dataclass(frozen=True)
class TokenBreakdown:
    """``total = base + grid + newline``; the grid is the unpadded map, one newline token per row."""

    base: int
    grid: int
    newline: int
    total: int


def base_tokens(cfg: AnyResConfig, strategy: str = "default", has_cls: bool = True) -> int:
    """Tokens of the whole-image base crop, as ``LlavaNextProcessor`` counts them.

    p*p patches, +1 for a CLS token (``num_additional_image_tokens``), -1 for the "default" strategy, which
    drops the first token (the CLS for CLIP towers).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return cfg.patches_per_side**2 + int(has_cls) - int(strategy == "default")


def token_breakdown(
    size: Sequence[int], cfg: AnyResConfig, strategy: str = "default", has_cls: bool = True
) -> TokenBreakdown:
    base = base_tokens(cfg, strategy, has_cls)
    shape = unpadded_feature_shape(size, grid_shape(size, cfg), cfg.patches_per_side)
    grid = shape.height * shape.width
    return TokenBreakdown(base=base, grid=grid, newline=shape.height, total=base + grid + shape.height)


def num_image_tokens(
    size: Sequence[int], cfg: AnyResConfig, strategy: str = "default", has_cls: bool = True
) -> int:
    """Number of ``<image>`` placeholders for one image of ``size`` (W, H): 576 + h * (w + 1) for LLaVA-1.6."""
    return token_breakdown(size, cfg, strategy, has_cls).total


@dataclass(frozen=True)
class AnyResPlan:
    """Everything AnyRes decides for one image; sizes (W, H), grid (cols, rows), shapes (height, width)."""

    image_size: Size
    best_resolution: Size
    grid: Grid
    num_tiles: int  # grid tiles only
    num_crops: int  # what the vision encoder sees: the base image + the tiles
    resized_size: Size
    content_box: Box
    tile_boxes: tuple[Box, ...]
    feature_shape: FeatureShape  # before unpadding
    unpadded_shape: FeatureShape
    tokens: TokenBreakdown
    config: AnyResConfig = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": list(self.image_size),
            "best_resolution": list(self.best_resolution),
            "grid": list(self.grid),
            "num_tiles": self.num_tiles,
            "num_crops": self.num_crops,
            "resized_size": list(self.resized_size),
            "content_box": list(self.content_box),
            "tile_boxes": [list(box) for box in self.tile_boxes],
            "feature_shape": list(self.feature_shape),
            "unpadded_shape": list(self.unpadded_shape),
            "num_image_tokens": self.tokens.total,
            "tokens": {"base": self.tokens.base, "grid": self.tokens.grid, "newline": self.tokens.newline},
            "config": {
                "tile": self.config.tile,
                "patch": self.config.patch,
                "pinpoints": self.config.pinpoints,
            },
            "conventions": {"sizes": "[width, height]", "grid": "[cols, rows]", "shapes": "[height, width]"},
        }


def plan(
    size: Sequence[int], cfg: AnyResConfig, strategy: str = "default", has_cls: bool = True
) -> AnyResPlan:
    image = _image_size(size)
    best = select_best_resolution(image, cfg.pinpoints)
    grid = Grid(best.width // cfg.tile, best.height // cfg.tile)
    resized = resized_size_for_fit(image, best)
    per_side = cfg.patches_per_side
    return AnyResPlan(
        image_size=image,
        best_resolution=best,
        grid=grid,
        num_tiles=grid.cols * grid.rows,
        num_crops=grid.cols * grid.rows + 1,
        resized_size=resized,
        content_box=content_box(resized, best),
        tile_boxes=tile_boxes(grid, cfg.tile),
        feature_shape=FeatureShape(grid.rows * per_side, grid.cols * per_side),
        unpadded_shape=unpadded_feature_shape(image, grid, per_side),
        tokens=token_breakdown(image, cfg, strategy, has_cls),
        config=cfg,
    )


# ---------------------------------------------------------------------------------------------- CLI


def parse_size(text: str, option: str = "--size") -> Size:
    """Parse ``WxH`` (positive integers); the error names the option and echoes the bad value."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{option} must be WxH with positive integers, got {text!r}")
    return Size(int(parts[0]), int(parts[1]))


def parse_pinpoints(text: str) -> tuple[Size, ...]:
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"--pinpoints must be a comma-separated list of WxH, got {text!r}")
    return tuple(parse_size(item.strip(), "--pinpoints entries") for item in items)
