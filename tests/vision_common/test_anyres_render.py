"""AnyRes pictures for the UI: the crops are exactly what the "pil" pixel backend normalises, and the grid
picture puts base, canvas, shading, borders and caption where the plan says."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from vision_common.anyres.geometry import AnyResConfig, plan
from vision_common.anyres.pixels import PixelConfig, preprocess
from vision_common.anyres.render import (
    BASE_BORDER,
    CAPTION_HEIGHT,
    GAP,
    MIN_TILE_DISPLAY,
    TILE_BORDER,
    caption,
    render_grid,
    tile_images,
)

FULL = AnyResConfig.llava_1_6()
TINY = AnyResConfig.tiny()


def _gradient(width: int, height: int) -> PIL.Image.Image:
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs * 255 // max(1, width - 1), ys * 255 // max(1, height - 1), np.full_like(xs, 200)], -1)
    return PIL.Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize(("cfg", "size"), [(FULL, (1280, 720)), (TINY, (100, 50)), (TINY, (1, 90))])
def test_tile_images_are_the_normalised_crops(cfg, size):
    image = _gradient(*size)
    crops = tile_images(image, cfg)
    assert len(crops) == plan(size, cfg).num_crops
    assert all(crop.size == (cfg.tile, cfg.tile) and crop.mode == "RGB" for crop in crops)
    as_uint8 = torch.from_numpy(np.stack([np.asarray(crop) for crop in crops])).permute(0, 3, 1, 2).float()
    pixel_cfg = PixelConfig(resize_backend="pil")
    mean = torch.tensor(pixel_cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(pixel_cfg.std).view(1, 3, 1, 1)
    expected = preprocess(image, cfg, pixel_cfg).pixel_values
    torch.testing.assert_close((as_uint8 / 255 - mean) / std, expected, atol=1e-5, rtol=0)


def test_tiles_are_black_in_the_letterbox():
    # 1280x720 -> 672x378 pasted at top 147: tile 1 (top left) is black above row 147, image below.
    crops = tile_images(_gradient(1280, 720), FULL)
    first_tile = np.asarray(crops[1])
    assert plan((1280, 720), FULL).content_box.top == 147
    assert first_tile[:147].max() == 0
    assert first_tile[147:].min(axis=(0, 1))[2] > 150  # the gradient's constant blue channel is there


def test_render_grid_layout_full_config():
    image = _gradient(1280, 720)
    sheet = render_grid(image, FULL)
    assert sheet.size == (GAP + 336 + GAP + 672 + GAP, GAP + 672 + CAPTION_HEIGHT)
    pixels = np.asarray(sheet).astype(int)
    canvas_left = 2 * GAP + 336

    def at(canvas_x: int, canvas_y: int) -> np.ndarray:
        return pixels[GAP + canvas_y, canvas_left + canvas_x]

    # Padding (black) under translucent amber (255, 200, 0) at alpha 110/255.
    np.testing.assert_allclose(at(500, 60), [110, 86, 0], atol=2)
    # Content is untouched: equals the tile crop (tile 2 = column 1, row 0).
    tile_two = np.asarray(tile_images(image, FULL)[2]).astype(int)
    np.testing.assert_array_equal(at(500, 300), tile_two[300, 500 - 336])
    # Tile borders on the canvas edge and on the inner tile seam; base-image frame.
    np.testing.assert_array_equal(at(0, 300), TILE_BORDER)
    np.testing.assert_array_equal(at(336, 300), TILE_BORDER)
    np.testing.assert_array_equal(pixels[GAP + 200, GAP - 1], BASE_BORDER)
    # The base image sits at the left, squashed to 336x336.
    base = np.asarray(tile_images(image, FULL)[0]).astype(int)
    np.testing.assert_array_equal(pixels[GAP + 200, GAP + 200], base[200, 200])
    # Caption area has dark text pixels.
    assert pixels[GAP + 672 + 4 :, :400].min() < 100


def test_caption_states_grid_and_tokens():
    text = caption(plan((1280, 720), FULL))
    assert "grid 2x2 (cols x rows) on a 672x672 canvas, 5 crops (base + 4 tiles)" in text
    assert "1,948 image tokens = 576 base + 1,344 grid + 28 newline" in text


def test_render_grid_tiny_config_is_zoomed_and_max_width_applies():
    sheet = render_grid(_gradient(100, 50), TINY)
    zoom = -(-MIN_TILE_DISPLAY // 32)
    assert zoom == 4
    assert sheet.height == GAP + 32 * zoom + CAPTION_HEIGHT  # 1-row grid, base and canvas both one tile high
    assert sheet.width >= GAP + 32 * zoom + GAP + 64 * zoom + GAP
    small = render_grid(_gradient(2000, 500), FULL, max_width=400)
    assert small.width == 400
    full = render_grid(_gradient(2000, 500), FULL)
    assert small.height == round(full.height * 400 / full.width)


def test_render_grid_rejects_bad_input():
    with pytest.raises(TypeError, match="expected a PIL.Image.Image, got ndarray"):
        render_grid(np.zeros((8, 8, 3), np.uint8), FULL)
    with pytest.raises(ValueError, match="max_width must be at least 64"):
        render_grid(_gradient(8, 8), FULL, max_width=10)


def test_render_handles_transparency_and_grayscale():
    rgba = _gradient(64, 64).convert("RGBA")
    rgba.putalpha(0)  # fully transparent -> white, as transformers composites it
    assert np.asarray(tile_images(rgba, TINY)[0]).min() == 255
    gray = _gradient(64, 40).convert("L")
    assert render_grid(gray, TINY).mode == "RGB"
