"""The trainer CLI's overrides: --anyres-grids (the base-tile-only ablation of the AnyRes finding), --grad-accum."""

from __future__ import annotations

import pytest

from trainer.llava.config import ConfigError
from trainer.llava.train import build_arg_parser, stage_config_from_args

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


def test_grids_with_init_are_contradictory():
    args = build_arg_parser().parse_args([*BASE, "--init", "m", "--anyres-grids", "1x1"])
    with pytest.raises(ConfigError, match="--init keeps the model's grids"):
        stage_config_from_args(args)


def test_grad_accum_reaches_the_runtime_and_is_validated():
    args = build_arg_parser().parse_args([*BASE, "--grad-accum", "4"])
    assert stage_config_from_args(args).runtime.grad_accum == 4
    args = build_arg_parser().parse_args([*BASE, "--grad-accum", "0"])
    with pytest.raises(ConfigError, match="grad_accum must be >= 1"):
        stage_config_from_args(args)
