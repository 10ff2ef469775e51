"""The trainer CLI's overrides: --anyres-grids (the base-tile-only ablation of the AnyRes finding; with --init, a
base-tile model continued at AnyRes), --grad-accum."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from trainer.llava.config import ConfigError
from trainer.llava.train import build_arg_parser, build_model, stage_config_from_args

BASE = ["--config", "tiny", "--stage", "1", "--data", "d.json", "--images", "imgs", "--out", "run"]


def test_grids_reach_the_architecture():
    args = build_arg_parser().parse_args([*BASE, "--anyres-grids", "1x1"])
    assert stage_config_from_args(args).architecture.anyres_grids == ((1, 1),)
    args = build_arg_parser().parse_args([*BASE, "--anyres-grids", "1x2, 2x1,2x2"])
    assert stage_config_from_args(args).architecture.anyres_grids == ((1, 2), (2, 1), (2, 2))


@pytest.mark.parametrize("bad", ["1x0", "2", "axb", "1x2,"])
def test_malformed_grids_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        build_arg_parser().parse_args([*BASE, "--anyres-grids", bad])
    assert exc.value.code == 2
    assert "COLSxROWS" in capsys.readouterr().err


def test_grids_with_init_replace_the_loaded_models_grids(tiny_llava_dir):
    """A base-tile model continued at AnyRes: model config and processor change together, so the processor
    inserts as many image tokens as the model packs for a multi-tile image."""
    args = build_arg_parser().parse_args([*BASE, "--init", str(tiny_llava_dir), "--anyres-grids", "1x1,2x2"])
    cfg = stage_config_from_args(args)
    parts = build_model(args, cfg)
    tile = parts.model.config.vision_config.image_size
    assert parts.model.config.image_grid_pinpoints == [[tile, tile], [2 * tile, 2 * tile]]
    assert parts.processor.image_processor.image_grid_pinpoints == [[tile, tile], [2 * tile, 2 * tile]]
    inputs = parts.processor(
        images=Image.new("RGB", (2 * tile, 2 * tile)), text="<image>", return_tensors="pt"
    )
    assert inputs["pixel_values"].shape[1] == 5  # base + 2x2 tiles
    with torch.no_grad():
        parts.model(**inputs)  # raises if the token count and the packed features disagree
    kept = build_model(build_arg_parser().parse_args([*BASE, "--init", str(tiny_llava_dir)]), cfg)
    assert kept.model.config.image_grid_pinpoints != parts.model.config.image_grid_pinpoints


def test_grad_accum_reaches_the_runtime_and_is_validated():
    args = build_arg_parser().parse_args([*BASE, "--grad-accum", "4"])
    assert stage_config_from_args(args).runtime.grad_accum == 4
    args = build_arg_parser().parse_args([*BASE, "--grad-accum", "0"])
    with pytest.raises(ConfigError, match="grad_accum must be >= 1"):
        stage_config_from_args(args)
