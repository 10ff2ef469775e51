"""The projector-input standardisation folded into linear_1 at assembly (a data-dependent init)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.support.llava_fixtures import stage1_records, write_json
from trainer.llava.assemble import assemble_llava, standardize_projector_input, vision_features
from trainer.llava.config import ArchitectureConfig, ConfigError, stage_preset
from trainer.llava.train import main

torch.set_num_threads(1)


def _assemble(tiny_llava_parts):
    torch.manual_seed(0)
    return assemble_llava(
        tiny_llava_parts.vision, tiny_llava_parts.lm, tiny_llava_parts.tokenizer, ArchitectureConfig()
    )


def test_folded_linear_1_equals_the_original_on_standardised_features(tiny_llava_parts):
    model = _assemble(tiny_llava_parts).model
    linear_1 = model.model.multi_modal_projector.linear_1
    original = torch.nn.Linear(linear_1.in_features, linear_1.out_features)
    original.load_state_dict(linear_1.state_dict())
    generator = torch.Generator().manual_seed(0)
    # A large shared component (+30 on every channel) and uneven channel scales, like a ViT's patch tokens.
    scale = torch.linspace(0.5, 4.0, linear_1.in_features)
    features = 30.0 + scale * torch.randn(500, linear_1.in_features, generator=generator)
    standardize_projector_input(model, features)
    probe = 30.0 + scale * torch.randn(7, linear_1.in_features, generator=generator)
    expected = original((probe - features.mean(0)) / (features.std(0) + 1e-6))
    torch.testing.assert_close(linear_1(probe), expected, rtol=1e-4, atol=1e-4)
    # The shared component no longer dominates: projected tokens stop pointing the same way.
    with torch.no_grad():
        before = torch.nn.functional.normalize(original(probe), dim=-1)
        after = torch.nn.functional.normalize(linear_1(probe), dim=-1)
    off_diagonal = ~torch.eye(7, dtype=torch.bool)
    assert (after @ after.T)[off_diagonal].mean() < 0.5 < (before @ before.T)[off_diagonal].mean()


def test_bad_feature_shapes_raise(tiny_llava_parts):
    model = _assemble(tiny_llava_parts).model
    width = model.model.multi_modal_projector.linear_1.in_features
    with pytest.raises(ValueError, match="channels"):
        standardize_projector_input(model, torch.randn(10, width + 1))
    with pytest.raises(ValueError, match="N >= 2"):
        standardize_projector_input(model, torch.randn(1, width))
    with pytest.raises(ConfigError, match="standardize_images"):
        ArchitectureConfig(standardize_images=-1)


def test_stage1_cli_standardises_from_its_training_images(tiny_llava_parts, tmp_path):
    assert stage_preset("tiny", 1).architecture.standardize_images == 2
    data = write_json(tmp_path / "s1.json", stage1_records())
    out = tmp_path / "run"
    args = ["--config", "tiny", "--stage", "1", "--data", str(data), "--images", str(tiny_llava_parts.images)]
    args += ["--vision-tower", str(tiny_llava_parts.vision), "--language-model", str(tiny_llava_parts.lm)]
    args += ["--tokenizer", str(tiny_llava_parts.tokenizer), "--out", str(out), "--no-progress"]
    assert main([*args, "--max-steps", "1", "--checkpoint-every", "0"]) == 0
    report = json.loads((out / "run_config.json").read_text())
    assert report["projector_input_standardized_on_images"] == 2
    # The step-0 projector is the folded one: its bias differs from a plain assembly's by -W/std @ mean.
    model = _assemble(tiny_llava_parts).model
    features = vision_features(model, torch.randn(2, 3, 32, 32))
    assert features.shape[1] == model.model.multi_modal_projector.linear_1.in_features
    saved = load_file(out / "final" / "model.safetensors")
    key = next(k for k in saved if k.endswith("multi_modal_projector.linear_1.weight"))
    assert not torch.allclose(saved[key], model.model.multi_modal_projector.linear_1.weight, atol=1e-2)
