"""REACT model side: zero-gated blocks equal the base model, the fork's parameter names, the directory format."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch import nn

from react_explorer.customized import model_dir as model_dir_module
from react_explorer.customized.gated_blocks import (
    ReactModelConfig,
    ReactModelError,
    attach_gated_blocks,
    default_last_k,
    gated_parameter_count,
)
from react_explorer.customized.model_dir import load_model_dir, save_model_dir
from react_explorer.customized.state_dicts import load_customized_state, read_checkpoint_file
from tests.support.react_support import save_random_tiny_clip

logging.getLogger().setLevel(logging.ERROR)

# The names of one gated block in the REACT fork (microsoft/react, react_customization/src/open_clip/
# transformer.py: GatedResidualAttentionBlock as ResidualAttentionBlock.gated_attn_block), written out by hand.
FORK_BLOCK_KEYS = (
    "ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
    "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
    "mlp.c_proj.bias", "alpha_attn", "alpha_dense",
)  # fmt: skip


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_random_tiny_clip(tmp_path_factory.mktemp("clip"))


def inputs(bundle, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(3, 3, 32, 32, generator=generator)
    return images, bundle.tokenizer(["red square", "blue circle photo", "green star icon"])


def features(model, images, tokens):
    with torch.no_grad():
        return model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True)


def test_zero_gates_equal_the_base_model_and_open_gates_change_only_images(clip_dir):
    bundle = load_model_dir(clip_dir)
    images, tokens = inputs(bundle)
    base_image, base_text = features(bundle.model, images, tokens)
    positions = attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=2))
    assert positions == [0, 1]
    gated_image, gated_text = features(bundle.model, images, tokens)
    assert torch.equal(gated_image, base_image) and torch.equal(gated_text, base_text)
    with torch.no_grad():
        for block in bundle.model.visual.transformer.resblocks:
            block.gated_attn_block.alpha_attn.fill_(0.5)
    opened_image, opened_text = features(bundle.model, images, tokens)
    assert torch.equal(opened_text, base_text)
    assert (opened_image - base_image).abs().max() > 1e-3


def test_gated_blocks_follow_the_fork_names_and_host_shapes(clip_dir):
    bundle = load_model_dir(clip_dir)
    attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=1))
    names = {k for k in bundle.model.state_dict() if "gated_attn_block" in k}
    assert names == {f"visual.transformer.resblocks.1.gated_attn_block.{key}" for key in FORK_BLOCK_KEYS}
    block = bundle.model.visual.transformer.resblocks[1].gated_attn_block
    host = bundle.model.visual.transformer.resblocks[1]
    width = host.ln_1.normalized_shape[0]
    assert block.attn.num_heads == host.attn.num_heads and block.attn.batch_first == host.attn.batch_first
    assert block.mlp.c_fc.weight.shape == (4 * width, width)  # MLP ratio 4
    assert type(block.mlp.gelu) is type(host.mlp.gelu) and type(block.ln_1) is type(host.ln_1)
    # Per block: 4 w^2 attention + 8 w^2 MLP weights, their biases (3w + w + 4w + w), two LayerNorms, 2 gates.
    assert gated_parameter_count(bundle.model) == 12 * width**2 + 9 * width + 4 * width + 2


def test_fork_named_checkpoint_loads(clip_dir, tmp_path):
    source = load_model_dir(clip_dir)
    attach_gated_blocks(source.model, ReactModelConfig(last_k_layers=1))
    with torch.no_grad():
        for name, param in source.model.named_parameters():
            if "gated_attn_block" in name:
                param.copy_(torch.randn_like(param) * 0.1)
        source.model.visual.transformer.resblocks[1].gated_attn_block.alpha_dense.fill_(0.25)
    # As the fork's training/main.py saves it: DDP's "module." prefix inside {"state_dict": ...}.
    fork_file = tmp_path / "epoch_32.pt"
    torch.save(
        {"epoch": 32, "state_dict": {f"module.{k}": v for k, v in source.model.state_dict().items()}},
        fork_file,
    )
    target = load_model_dir(clip_dir)
    attach_gated_blocks(target.model, ReactModelConfig(last_k_layers=1))
    missing = load_customized_state(target.model, read_checkpoint_file(fork_file), str(fork_file))
    assert missing == []
    assert target.model.visual.transformer.resblocks[1].gated_attn_block.alpha_dense.item() == 0.25
    images, tokens = inputs(source)
    for ours, theirs in zip(
        features(target.model, images, tokens), features(source.model, images, tokens), strict=True
    ):
        assert torch.equal(ours, theirs)


def test_fork_style_config_with_react_cfg_in_vision_cfg_loads(clip_dir, tmp_path):
    bundle = load_model_dir(clip_dir)
    attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=1))
    saved = save_model_dir(bundle.model, tmp_path / "m", model_cfg=bundle.model_cfg, preprocess_cfg=bundle.preprocess_cfg,
                           react=ReactModelConfig(1), tokenizer_dir=bundle.tokenizer_dir)  # fmt: skip
    config = json.loads((saved / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["react_cfg"] = {"enabled": True, "last_k_layers": 1}
    del config["react_cfg"]
    (saved / "open_clip_config.json").write_text(json.dumps(config))
    loaded = load_model_dir(saved)
    assert loaded.react == ReactModelConfig(1)
    images, tokens = inputs(bundle)
    assert torch.equal(features(loaded.model, images, tokens)[0], features(bundle.model, images, tokens)[0])


def test_plain_clip_weights_load_into_a_gated_model_with_closed_gates(clip_dir):
    base = load_model_dir(clip_dir)
    gated = load_model_dir(clip_dir)
    attach_gated_blocks(gated.model, ReactModelConfig(last_k_layers=2))
    missing = load_customized_state(gated.model, base.model.state_dict(), "plain")
    assert len(missing) == 2 * len(FORK_BLOCK_KEYS)
    images, tokens = inputs(base)
    assert torch.equal(features(gated.model, images, tokens)[0], features(base.model, images, tokens)[0])
    with pytest.raises(ReactModelError, match="unexpected .*gated_attn_block.*same react_cfg.last_k_layers"):
        load_customized_state(base.model, gated.model.state_dict(), "gated.pt")


def test_save_and_load_round_trip_keeps_outputs_and_settings(clip_dir, tmp_path):
    bundle = load_model_dir(clip_dir)
    attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=2))
    with torch.no_grad():
        bundle.model.visual.transformer.resblocks[0].gated_attn_block.alpha_attn.fill_(0.3)
    out = save_model_dir(bundle.model, tmp_path / "custom", model_cfg=bundle.model_cfg,
                         preprocess_cfg=bundle.preprocess_cfg, react=ReactModelConfig(2),
                         tokenizer_dir=bundle.tokenizer_dir, extra={"react_training": {"steps": 1}})  # fmt: skip
    config = json.loads((out / "open_clip_config.json").read_text())
    assert config["react_cfg"]["last_k_layers"] == 2 and config["react_cfg"]["enabled"] is True
    assert "react_cfg" not in config["model_cfg"]["vision_cfg"]
    assert config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] == "." and (out / "tokenizer.json").is_file()
    loaded = load_model_dir(out)
    images, tokens = inputs(bundle)
    for ours, theirs in zip(
        features(loaded.model, images, tokens), features(bundle.model, images, tokens), strict=True
    ):
        assert torch.equal(ours, theirs)


def test_failed_save_keeps_the_previous_directory(clip_dir, tmp_path, monkeypatch):
    bundle = load_model_dir(clip_dir)
    kwargs = {"model_cfg": bundle.model_cfg, "preprocess_cfg": bundle.preprocess_cfg, "react": None,
              "tokenizer_dir": bundle.tokenizer_dir}  # fmt: skip
    out = save_model_dir(bundle.model, tmp_path / "m", **kwargs)
    before = (out / "open_clip_model.safetensors").read_bytes()

    def broken_copy(*args, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(model_dir_module.shutil, "copy2", broken_copy)
    with torch.no_grad():
        bundle.model.logit_scale.fill_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_model_dir(bundle.model, out, **kwargs)
    assert (out / "open_clip_model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_gradient_checkpointing_gives_the_same_gradients(clip_dir):
    grads = []
    for checkpointing in (False, True):
        bundle = load_model_dir(clip_dir)
        torch.manual_seed(0)  # the gated blocks' random init must match between the two models
        attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=2, grad_checkpointing=checkpointing))
        with torch.no_grad():
            for block in bundle.model.visual.transformer.resblocks:
                block.gated_attn_block.alpha_attn.fill_(0.4)
                block.gated_attn_block.alpha_dense.fill_(-0.2)
        images, _ = inputs(bundle)
        bundle.model.encode_image(images).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in bundle.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6)


class NoVit(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = nn.Conv2d(3, 4, 3)


def test_bad_inputs_name_the_field(clip_dir):
    bundle = load_model_dir(clip_dir)
    with pytest.raises(ReactModelError, match=r"last_k_layers = 3 is larger than the vision tower's depth 2"):
        attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=3))
    with pytest.raises(ReactModelError, match="last_k_layers must be >= 1"):
        ReactModelConfig(last_k_layers=0)
    with pytest.raises(ReactModelError, match="vision tower is Conv2d, not a vision transformer"):
        attach_gated_blocks(NoVit(), ReactModelConfig(last_k_layers=1))
    with pytest.raises(ReactModelError, match="unknown fields"):
        ReactModelConfig.from_dict({"enabled": True, "last_k_layers": 1, "bottleneck": 64})
    attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=1))
    with pytest.raises(ReactModelError, match="already has a gated_attn_block"):
        attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=1))


def test_default_k_matches_the_fork():
    assert [default_last_k(d) for d in (12, 24, 48, 4, 2, 1)] == [6, 6, 12, 2, 1, 1]
