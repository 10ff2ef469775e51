"""AnyRes geometry and token arithmetic: hand-computed values (llava.md section 3), tie-breaks, edge sizes,
config validation, the CLI. Pure Python, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llava_demo.anyres import main
from vision_common.anyres.geometry import (
    AnyResConfig,
    Box,
    FeatureShape,
    Grid,
    Size,
    base_tokens,
    content_box,
    grid_shape,
    num_image_tokens,
    plan,
    resized_size_for_fit,
    select_best_resolution,
    transformers_image_processor_kwargs,
    transformers_pinpoints,
    unpadded_feature_shape,
)

LLAVA = AnyResConfig.llava_1_6()

# llava.md section 3 token table: input (W, H) -> chosen canvas (W, H), grid (cols, rows), crops,
# unpadded (h, w), tokens. Every row re-derived by hand in the comments of test_token_table_hand_derivations.
TOKEN_TABLE = [
    ((336, 336), (336, 672), (1, 2), 3, (24, 24), 1176),
    ((672, 672), (672, 672), (2, 2), 5, (48, 48), 2928),
    ((1024, 1024), (672, 672), (2, 2), 5, (48, 48), 2928),
    ((640, 480), (672, 672), (2, 2), 5, (36, 48), 2340),
    ((800, 600), (672, 672), (2, 2), 5, (36, 48), 2340),
    ((480, 640), (672, 672), (2, 2), 5, (48, 36), 2352),
    ((1280, 720), (672, 672), (2, 2), 5, (28, 48), 1948),
    ((720, 1280), (672, 672), (2, 2), 5, (48, 28), 1968),
    ((672, 336), (672, 336), (2, 1), 3, (24, 48), 1752),
    ((336, 672), (336, 672), (1, 2), 3, (48, 24), 1776),
    ((1008, 336), (1008, 336), (3, 1), 4, (24, 72), 2328),
    ((336, 1008), (336, 1008), (1, 3), 4, (72, 24), 2376),
    ((2000, 500), (1008, 336), (3, 1), 4, (18, 72), 1890),
]


@pytest.mark.parametrize(("size", "canvas", "grid", "crops", "unpadded", "tokens"), TOKEN_TABLE)
def test_llava_md_token_table(size, canvas, grid, crops, unpadded, tokens):
    result = plan(size, LLAVA)
    assert result.best_resolution == canvas
    assert result.grid == grid
    assert result.num_crops == crops and result.num_tiles == crops - 1
    assert result.unpadded_shape == unpadded
    assert result.tokens.total == tokens == num_image_tokens(size, LLAVA)
    assert tokens == 576 + unpadded[0] * (unpadded[1] + 1)


def test_token_table_hand_derivations():
    # 1280x720 -> 672x672 canvas, map 48x48; 1280/720 > 1 so rows are cut: content rows
    # int(720 * 48/1280) = 27, slack 21 -> 10 removed each side -> 28 rows (not 27: the odd cell stays).
    assert unpadded_feature_shape((1280, 720), (2, 2), 24) == FeatureShape(28, 48)
    # 2000x500 -> 1008x336, map 24x72; 4 > 3 so rows: 500 * 72/2000 = 18, slack 6 -> 3 each side.
    assert unpadded_feature_shape((2000, 500), (3, 1), 24) == FeatureShape(18, 72)
    # 336x336 on 1x2: 1 > 24/48, rows: 336 * 24/336 = 24, slack 24 -> 12 each side.
    assert unpadded_feature_shape((336, 336), (1, 2), 24) == FeatureShape(24, 24)
    # Float edge: 47 * (72/1128) = 2.9999999999999996; transformers rounds to 7 digits first (content 3 columns,
    # 10 removed each side -> 4), where LLaVA's plain int() would give 2 -> 11 each side -> 2 columns.
    assert unpadded_feature_shape((47, 1128), (1, 3), 24) == FeatureShape(72, 4)
    # The maximum: 576 + 48 * 49 (LLaVA-1.6 caps at 2,928).
    assert max(num_image_tokens((w, h), LLAVA) for w in (100, 672, 2000) for h in (100, 672, 2000)) == 2928


def test_first_listed_candidate_wins_exact_ties():
    # Every candidate holds a 336x336 image at full size; 336x672 and 672x336 waste the same -> first wins.
    assert select_best_resolution((336, 336), [(336, 672), (672, 336)]) == Size(336, 672)
    assert select_best_resolution((336, 336), [(672, 336), (336, 672)]) == Size(672, 336)
    # Tiny images upscale everywhere (effective = own area), so the least waste decides: 1x1 never picks 2x2.
    assert select_best_resolution((1, 1), LLAVA.pinpoints) == Size(336, 672)
    # Degenerate lines: int(W * s) * int(H * s) is 0 for every candidate -> first listed, whatever the shape.
    assert select_best_resolution((4000, 1), LLAVA.pinpoints) == Size(336, 672)
    # A larger effective area beats less waste.
    assert select_best_resolution((1000, 1000), [(336, 672), (672, 672)]) == Size(672, 672)


def test_resized_size_and_padding_box():
    assert resized_size_for_fit((640, 480), (672, 672)) == Size(672, 504)
    assert content_box((672, 504), (672, 672)) == Box(0, 84, 672, 588)
    # ceil keeps a 1-px line visible; odd slack puts the extra pixel right/bottom (divmod rule).
    assert resized_size_for_fit((1, 4000), (336, 672)) == Size(1, 672)
    assert content_box((1, 672), (336, 672)) == Box(167, 0, 168, 672)
    assert resized_size_for_fit((17, 5), (1008, 336)) == Size(1008, 297)  # ceil(5 * 1008/17) = ceil(296.47)
    assert content_box((1008, 297), (1008, 336)) == Box(0, 19, 1008, 316)


def test_degenerate_lines_and_strategies():
    # 1x4000 on the 1x2 grid: content width int(round(1 * 48/4000, 7)) = 0 -> all 24 columns removed,
    # leaving 48 newline tokens only.
    assert plan((1, 4000), LLAVA).unpadded_shape == FeatureShape(48, 0)
    assert num_image_tokens((1, 4000), LLAVA) == 576 + 48
    assert num_image_tokens((4000, 1), LLAVA) == 576  # 0 rows: not even a newline
    assert base_tokens(LLAVA, "default", has_cls=True) == 576
    assert base_tokens(LLAVA, "full", has_cls=True) == 577
    assert (
        base_tokens(LLAVA, "default", has_cls=False) == 575
    )  # transformers drops the first token regardless
    assert num_image_tokens((640, 480), LLAVA, strategy="full") == 2341
    with pytest.raises(ValueError, match="strategy"):
        num_image_tokens((640, 480), LLAVA, strategy="cls_patch")


def test_plan_tiles_cover_the_canvas_row_major():
    result = plan((1280, 720), LLAVA)
    assert result.tile_boxes == (
        Box(0, 0, 336, 336),
        Box(336, 0, 672, 336),
        Box(0, 336, 336, 672),
        Box(336, 336, 672, 672),
    )
    assert result.feature_shape == FeatureShape(48, 48)
    tokens = result.tokens
    assert (tokens.base, tokens.grid, tokens.newline, tokens.total) == (576, 28 * 48, 28, 1948)
    assert grid_shape((1280, 720), LLAVA) == Grid(2, 2)


def test_presets():
    assert LLAVA == AnyResConfig()
    assert LLAVA.pinpoints == ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))
    assert LLAVA.patches_per_side == 24
    hd = AnyResConfig.dissertation_grids(336)
    assert {(w // 336, h // 336) for w, h in hd.pinpoints} == {
        (2, 2),
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 1),
        (3, 1),
        (4, 1),
    }
    assert plan((1344, 336), hd).grid == Grid(4, 1)
    assert plan((300, 1200), hd).grid == Grid(1, 4)
    tiny = AnyResConfig.tiny()
    assert (tiny.tile, tiny.patch, tiny.pinpoints[0]) == (32, 8, (32, 64))
    assert num_image_tokens((32, 32), tiny) == 36  # docstring promise: 16 + 4 * (4 + 1)
    siglip = AnyResConfig.llava_1_6(tile=384, patch=16)
    assert siglip.pinpoints[2] == (768, 768)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile": 336, "patch": 15}, "multiple of patch"),
        ({"tile": 0}, "tile must be a positive integer"),
        ({"patch": -14}, "patch must be a positive integer"),
        ({"pinpoints": ()}, "at least one"),
        ({"pinpoints": ((336, 600),)}, "336x600 .* not a multiple of tile 336"),
        ({"pinpoints": ((336, 672), (336, 672))}, "336x672 twice"),
        ({"pinpoints": ((336,),)}, "pair of positive integers"),
        ({"pinpoints": ((336, 0),)}, "pair of positive integers"),
    ],
)
def test_config_rejects_contradictions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AnyResConfig(**kwargs)


def test_bad_image_sizes_are_named():
    with pytest.raises(ValueError, match=r"image size \(width, height\)"):
        plan((0, 10), LLAVA)
    with pytest.raises(ValueError, match=r"image size \(width, height\)"):
        num_image_tokens((10,), LLAVA)


def test_transformers_round_trip_swaps_height_width():
    hw = transformers_pinpoints(LLAVA)
    assert hw[0] == [672, 336]  # LLaVA's 336 wide x 672 tall, written [height, width]
    hf_dict = {"vision_config": {"image_size": 336, "patch_size": 14}, "image_grid_pinpoints": hw}
    assert AnyResConfig.from_transformers(hf_dict) == LLAVA
    # transformers' own default list read as (height, width): first candidate is 672 wide x 336 tall.
    hf_default = {
        "vision_config": {"image_size": 336, "patch_size": 14},
        "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [336, 1008], [1008, 336]],
    }
    assert AnyResConfig.from_transformers(hf_default).pinpoints[0] == (672, 336)
    kwargs = transformers_image_processor_kwargs(AnyResConfig.tiny())
    assert kwargs["size"] == {"shortest_edge": 32} and kwargs["crop_size"] == {"height": 32, "width": 32}
    with pytest.raises(ValueError, match="vision_config"):
        AnyResConfig.from_transformers({"image_grid_pinpoints": hw})


def test_from_transformers_llava_next_config():
    from transformers import CLIPVisionConfig, LlavaNextConfig

    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(image_size=32, patch_size=8), image_grid_pinpoints=[[64, 32], [32, 64]]
    )
    cfg = AnyResConfig.from_transformers(config)
    assert (cfg.tile, cfg.patch, cfg.pinpoints) == (32, 8, ((32, 64), (64, 32)))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--size", "640x480"],
            {"best_resolution": [672, 672], "grid": [2, 2], "num_tiles": 4, "num_image_tokens": 2340},
        ),
        (
            ["--size", "336x336"],
            {"best_resolution": [336, 672], "grid": [1, 2], "num_tiles": 2, "num_image_tokens": 1176},
        ),
        (
            ["--size", "2000X500"],
            {"best_resolution": [1008, 336], "grid": [3, 1], "num_tiles": 3, "num_image_tokens": 1890},
        ),
        (
            ["--size", "100x50", "--tile", "32", "--patch", "8", "--pinpoints", "32x64,64x32,64x64"],
            {"best_resolution": [64, 32], "grid": [2, 1], "num_tiles": 2, "num_image_tokens": 52},
        ),
        (
            ["--size", "640x480", "--strategy", "full", "--no-cls"],
            {"grid": [2, 2], "num_image_tokens": 2340, "tokens": {"base": 576, "grid": 1728, "newline": 36}},
        ),
    ],
)
def test_cli_json(argv, expected, capsys):
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {key: out[key] for key in expected} == expected
    assert out["num_crops"] == out["num_tiles"] + 1


def test_cli_text_output(capsys):
    assert main(["--size", "1280x720"]) == 0
    out = capsys.readouterr().out
    assert "best_resolution:   672x672 (WxH)" in out
    assert "grid:              2x2 (columns x rows)" in out
    assert "num_image_tokens:  1948 (base 576 + grid 1344 + newline 28)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size", "12"], "--size must be WxH with positive integers, got '12'"),
        (["--size", "0x5"], "--size must be WxH with positive integers, got '0x5'"),
        (["--size", "axb"], "got 'axb'"),
        (
            ["--size", "10x10", "--pinpoints", "336x672,foo"],
            "--pinpoints entries must be WxH with positive integers, got 'foo'",
        ),
        (["--size", "10x10", "--pinpoints", "336x600"], "336x600 (WxH) is not a multiple of tile 336"),
        (["--size", "10x10", "--tile", "300"], "tile (300) must be a multiple of patch (14)"),
        (["--size", "10x10", "--pinpoints", ","], "--pinpoints must be a comma-separated list"),
    ],
)
def test_cli_bad_args(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "llava_demo.anyres", "--size", "800x600", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)["num_image_tokens"] == 2340
    bad = subprocess.run(
        [sys.executable, "-m", "llava_demo.anyres", "--size", "12"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--size must be WxH with positive integers, got '12'" in bad.stderr
