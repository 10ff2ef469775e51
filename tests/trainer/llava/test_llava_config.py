"""Stage configs: every preset is valid and contradictory options fail naming the field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from trainer.llava.config import PRESETS, ArchitectureConfig, ConfigError, StageConfig, stage_preset
from trainer.runtime.config import RuntimeConfig


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid_and_follow_the_stage_rules(name):
    one, two = stage_preset(name, 1), stage_preset(name, 2)
    assert (one.stage, one.template) == (1, "plain")
    assert two.stage == 2 and two.template != "plain"
    assert not one.tune_vision and not two.tune_vision
    assert one.to_dict()["runtime"]["learning_rate"] == one.runtime.learning_rate


def test_reference_hyperparameters_are_recorded():
    # llava.md §5: LLaVA-1.5 pretrain 1e-3 (32/GPU), finetune 2e-5 (16/GPU), 2048 tokens, warmup 0.03, wd 0.
    pre, fine = stage_preset("llava_1_5_7b", 1), stage_preset("llava_1_5_7b", 2)
    assert (pre.runtime.learning_rate, pre.micro_batch_size, pre.max_length) == (1e-3, 32, 2048)
    assert (fine.runtime.learning_rate, fine.micro_batch_size, fine.template) == (2e-5, 16, "vicuna_v1")
    assert pre.runtime.warmup_ratio == 0.03 and pre.runtime.weight_decay == 0.0 and pre.runtime.epochs == 1.0
    nxt = stage_preset("llava_next_7b", 2)
    assert (nxt.runtime.learning_rate, nxt.micro_batch_size, nxt.max_length) == (1e-5, 4, 32768)


def base(**changes) -> StageConfig:
    return replace(stage_preset("tiny", 2), **changes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stage": 1}, "stage 1 aligns features.*'plain' template"),
        ({"template": "plain"}, "plain' template is for stage 1 only"),
        ({"vision_lr": 1e-4}, "vision_lr is set but tune_vision is False"),
        ({"tune_vision": True, "vision_lr": -1.0}, "vision_lr must be > 0"),
        ({"stage": 1, "template": "plain", "tune_vision": True}, "stage 1 trains only the projector"),
        ({"stage": 3}, "stage must be 1 or 2"),
        ({"template": "nope"}, "template: unknown template 'nope'"),
        ({"max_length": 8}, "max_length"),
        ({"micro_batch_size": 0}, "micro_batch_size"),
        ({"projector_lr": 0.0}, "projector_lr must be > 0"),
        ({"stage": 1, "template": "plain", "projector_lr": 1e-4}, "projector_lr is a stage-2 option"),
    ],
)
def test_contradictory_stage_options_raise(change, message):
    with pytest.raises(ConfigError, match=message):
        base(**change)


def test_bad_learning_rate_and_architecture_raise():
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        stage_preset("tiny", 1).with_runtime(learning_rate=0.0)
    with pytest.raises(ConfigError, match="projector"):
        ArchitectureConfig(projector="mlp3x_gelu")
    with pytest.raises(ConfigError, match="anyres_grids"):
        ArchitectureConfig(anyres_grids=((0, 1),))
    with pytest.raises(ConfigError, match="vision_feature_layer"):
        ArchitectureConfig(vision_feature_layer=3)
    with pytest.raises(ConfigError, match="unknown preset"):
        stage_preset("huge", 1)
    assert base(projector_lr=1e-3).projector_lr_scale == pytest.approx(1e-3 / 5e-4)
    assert isinstance(base().runtime, RuntimeConfig)
