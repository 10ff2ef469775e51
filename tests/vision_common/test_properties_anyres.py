"""Property tests (issue 19) of AnyRes geometry, ``vision_common.anyres.geometry``, over arbitrary image sizes,
tiles, patches and candidate canvases. test_anyres_parity.py compares fixed sizes with transformers' processor;
here the invariants every size must satisfy, and the pure transformers functions on sizes hypothesis picks.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers.image_processing_utils import select_best_resolution as hf_select_best_resolution
from transformers.models.llava_next.modeling_llava_next import unpad_image as hf_unpad_image

from vision_common.anyres.geometry import (
    AnyResConfig,
    Size,
    base_tokens,
    content_box,
    plan,
    resized_size_for_fit,
    select_best_resolution,
    transformers_pinpoints,
    unpadded_feature_shape,
)

PROPERTIES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIDES = st.integers(1, 5000)
SIZES = st.tuples(SIDES, SIDES) | st.tuples(st.integers(1, 8), st.integers(1000, 20000)).map(
    lambda pair: pair if pair[0] % 2 else pair[::-1]  # long strips either way round
)


@st.composite
def configs(draw) -> AnyResConfig:
    patch = draw(st.integers(1, 16))
    tile = patch * draw(st.integers(1, 6))
    grids = draw(
        st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=7, unique=True)
    )
    return AnyResConfig(tile=tile, patch=patch, pinpoints=tuple((c * tile, r * tile) for c, r in grids))


def effective_and_waste(size, canvas) -> tuple[int, int]:
    """The LLaVA rule's two scores for one canvas: pixels of the image kept when it is fitted inside (an upscale
    earns nothing), and canvas pixels left over."""
    (width, height), (cand_w, cand_h) = size, canvas
    scale = min(cand_w / width, cand_h / height)
    effective = min(int(width * scale) * int(height * scale), width * height)
    return effective, cand_w * cand_h - effective


@PROPERTIES
@given(size=SIZES, cfg=configs())
def test_the_best_canvas_is_listed_optimal_and_the_first_of_equals(size, cfg):
    best = select_best_resolution(size, cfg.pinpoints)
    assert best in cfg.pinpoints
    scores = [effective_and_waste(size, canvas) for canvas in cfg.pinpoints]
    chosen = effective_and_waste(size, best)
    assert all((effective, -waste) <= (chosen[0], -chosen[1]) for effective, waste in scores)
    assert cfg.pinpoints.index(best) == scores.index(chosen)  # exact ties go to the first listed canvas


@PROPERTIES
@given(size=SIZES, cfg=configs())
def test_a_canvas_the_image_fits_in_is_preferred_and_the_smallest_such_is_chosen(size, cfg):
    """Never downscale when some canvas holds the image unscaled; among those, waste the least area."""
    width, height = size
    holding = [canvas for canvas in cfg.pinpoints if canvas[0] >= width and canvas[1] >= height]
    best = select_best_resolution(size, cfg.pinpoints)
    if holding:
        smallest = min(canvas[0] * canvas[1] for canvas in holding)
        assert best in holding and best[0] * best[1] == smallest
        assert best == next(canvas for canvas in holding if canvas[0] * canvas[1] == smallest)


@PROPERTIES
@given(size=SIZES, cfg=configs(), extra=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_offering_one_more_canvas_never_keeps_fewer_pixels(size, cfg, extra):
    canvas = (extra[0] * cfg.tile, extra[1] * cfg.tile)
    if canvas in cfg.pinpoints:
        return
    more = AnyResConfig(tile=cfg.tile, patch=cfg.patch, pinpoints=(*cfg.pinpoints, canvas))
    before = effective_and_waste(size, select_best_resolution(size, cfg.pinpoints))[0]
    after = effective_and_waste(size, select_best_resolution(size, more.pinpoints))[0]
    assert after >= before


@PROPERTIES
@given(size=SIZES, target=st.tuples(st.integers(1, 3000), st.integers(1, 3000)))
def test_the_resized_image_fills_one_side_and_keeps_the_aspect_ratio(size, target):
    width, height = size
    resized = resized_size_for_fit(size, target)
    assert 1 <= resized.width <= target[0] and 1 <= resized.height <= target[1]
    assert resized.width == target[0] or resized.height == target[1]  # the limiting side is filled exactly
    if resized.width == target[0] and resized.height < target[1]:
        assert 0 <= resized.height - height * (target[0] / width) < 1  # the other side ceil-ed: < 1 px
    if resized.height == target[1] and resized.width < target[0]:
        assert 0 <= resized.width - width * (target[1] / height) < 1
    box = content_box(resized, target)
    assert (box.right - box.left, box.bottom - box.top) == resized
    assert 0 <= box.left and box.right <= target[0] and 0 <= box.top and box.bottom <= target[1]
    # Centred; an odd remainder goes right/bottom.
    assert (target[0] - box.right) - box.left in (0, 1) and (target[1] - box.bottom) - box.top in (0, 1)


@PROPERTIES
@given(size=SIZES, cfg=configs())
def test_the_tiles_partition_the_canvas_row_major(size, cfg):
    result = plan(size, cfg)
    best, grid = result.best_resolution, result.grid
    assert (grid.cols * cfg.tile, grid.rows * cfg.tile) == best
    assert len(result.tile_boxes) == result.num_tiles == grid.cols * grid.rows == result.num_crops - 1
    covered = set()
    for index, box in enumerate(result.tile_boxes):
        row, col = divmod(index, grid.cols)
        assert (box.left, box.top) == (col * cfg.tile, row * cfg.tile)
        assert (box.right - box.left, box.bottom - box.top) == (cfg.tile, cfg.tile)
        covered.add((box.left, box.top))
    assert len(covered) == grid.cols * grid.rows  # disjoint, so together exactly the canvas
    assert result.feature_shape == (grid.rows * cfg.patches_per_side, grid.cols * cfg.patches_per_side)


@PROPERTIES
@given(size=SIZES, cfg=configs())
def test_unpadding_removes_only_letterbox_cells_evenly_and_keeps_the_content(size, cfg):
    width, height = size
    result = plan(size, cfg)
    full_h, full_w = result.feature_shape
    kept_h, kept_w = result.unpadded_shape
    assert 0 <= kept_h <= full_h and 0 <= kept_w <= full_w
    assert kept_h == full_h or kept_w == full_w  # only the letterboxed axis shrinks
    assert (full_h - kept_h) % 2 == 0 and (full_w - kept_w) % 2 == 0  # the same number of cells per side
    if kept_w < full_w:  # the content's width in cells, within the rounding of two cut edges
        assert abs(kept_w - width * full_h / height) < 2
    if kept_h < full_h:
        assert abs(kept_h - height * full_w / width) < 2


@PROPERTIES
@given(size=SIZES, cfg=configs(), strategy=st.sampled_from(["default", "full"]), has_cls=st.booleans())
def test_token_count_is_base_plus_one_newline_per_unpadded_row(size, cfg, strategy, has_cls):
    result = plan(size, cfg, strategy, has_cls)
    tokens, (kept_h, kept_w) = result.tokens, result.unpadded_shape
    assert (
        tokens.base
        == base_tokens(cfg, strategy, has_cls)
        == cfg.patches_per_side**2 + has_cls - (strategy == "default")
    )
    assert (tokens.grid, tokens.newline) == (kept_h * kept_w, kept_h)
    assert tokens.total == tokens.base + kept_h * (kept_w + 1)
    most = max((r // cfg.patch) * (c // cfg.patch + 1) for c, r in cfg.pinpoints)
    assert tokens.base <= tokens.total <= tokens.base + most


@PROPERTIES
@given(size=SIZES, cfg=configs())
def test_best_canvas_and_unpadding_agree_with_transformers(size, cfg):
    """transformers reads sizes and pinpoints as (height, width); ours as (width, height)."""
    width, height = size
    hf_best = hf_select_best_resolution((height, width), transformers_pinpoints(cfg))
    ours = select_best_resolution(size, cfg.pinpoints)
    assert Size(hf_best[1], hf_best[0]) == ours
    grid = plan(size, cfg).grid
    per_side = cfg.patches_per_side
    features = torch.zeros(1, grid.rows * per_side, grid.cols * per_side)
    unpadded = hf_unpad_image(features, (height, width))
    assert tuple(unpadded.shape[1:]) == tuple(unpadded_feature_shape(size, grid, per_side))
