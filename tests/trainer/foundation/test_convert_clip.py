"""open_clip vision tower -> transformers CLIPVisionModel: parity on random weights, activation, errors."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPImageProcessor, CLIPVisionModel, CLIPVisionModelWithProjection
from transformers.utils import logging as hf_logging

from trainer.foundation.convert_clip import (
    ClipConversionError,
    convert_open_clip_dir,
    convert_visual_state_dict,
    hf_vision_config_dict,
    main,
)
from trainer.foundation.tokenizer import save_tokenizer, train_tokenizer
from vision_common.tiny_clip import (
    OPEN_CLIP_CONFIG_NAME,
    TinyClipConfig,
    create_tiny_clip,
    save_open_clip_dir,
)

logging.getLogger().setLevel(logging.ERROR)
hf_logging.set_verbosity_error()
ATOL = 1e-4


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(train_tokenizer(["red star", "blue circle", "green square"] * 10, vocab_size=280), out)
    return out


def _random_open_clip(
    tokenizer_dir: Path, out: Path, *, quick_gelu: bool, seed: int = 0, resize_mode: str = "squash"
):
    """A tiny open_clip CLIP with all weights random (LayerNorm gains/biases and class token included)."""
    cfg = replace(TinyClipConfig.tiny(), quick_gelu=quick_gelu, resize_mode=resize_mode)
    model, _, preprocess, _ = create_tiny_clip(cfg, tokenizer_dir, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():  # the default init has LN = (1, 0): perturb so a mapping slip shows
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    model.eval()
    save_open_clip_dir(model, cfg, out, tokenizer_dir=tokenizer_dir)
    return model, preprocess, cfg


def _open_clip_hidden_states(visual: torch.nn.Module, pixels: torch.Tensor) -> list[torch.Tensor]:
    """Reference: embeddings after ln_pre, then the output of every residual block, [B, 1+N, D] each."""
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)  # [B, N, D]
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    states = [x]
    for block in visual.transformer.resblocks:
        x = block(x)
        states.append(x)
    return states


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_converted_model_matches_open_clip_everywhere(
    tokenizer_dir: Path, tmp_path: Path, quick_gelu: bool
) -> None:
    model, _, cfg = _random_open_clip(tokenizer_dir, tmp_path / "oc", quick_gelu=quick_gelu)
    convert_open_clip_dir(tmp_path / "oc", tmp_path / "hf_proj", with_projection=True)
    convert_open_clip_dir(tmp_path / "oc", tmp_path / "hf")
    with_projection = CLIPVisionModelWithProjection.from_pretrained(tmp_path / "hf_proj").eval()
    plain = CLIPVisionModel.from_pretrained(tmp_path / "hf").eval()
    assert plain.config.hidden_act == ("quick_gelu" if quick_gelu else "gelu")
    pixels = torch.randn(3, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = _open_clip_hidden_states(model.visual, pixels)
        # Sanity of the reference itself: its last state through ln_post/proj is encode_image.
        assert torch.allclose(
            model.visual.ln_post(reference[-1][:, 0]) @ model.visual.proj,
            model.encode_image(pixels),
            atol=1e-6,
        )
        ours = with_projection(pixel_values=pixels, output_hidden_states=True)
        ours_plain = plain(pixel_values=pixels, output_hidden_states=True)
        assert len(ours.hidden_states) == cfg.vision_layers + 1
        for layer, (expected, got, got_plain) in enumerate(
            zip(reference, ours.hidden_states, ours_plain.hidden_states)
        ):
            assert torch.allclose(got, expected, atol=ATOL), f"hidden state {layer} differs"
            assert torch.allclose(got_plain, expected, atol=ATOL), (
                f"hidden state {layer} differs (CLIPVisionModel)"
            )
        assert torch.allclose(ours.image_embeds, model.encode_image(pixels), atol=ATOL)
        pooled = ours_plain.pooler_output @ model.visual.proj
        assert torch.allclose(pooled, model.encode_image(pixels), atol=ATOL)
        # The LLaVA feature layer (-2) is the penultimate block output.
        assert torch.allclose(ours_plain.hidden_states[-2], reference[-2], atol=ATOL)


def test_wrong_activation_breaks_parity(tokenizer_dir: Path, tmp_path: Path) -> None:
    """The activation is load-bearing: the same weights under the other GELU drift well past the tolerance."""
    model, _, cfg = _random_open_clip(tokenizer_dir, tmp_path / "oc", quick_gelu=False)
    convert_open_clip_dir(tmp_path / "oc", tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["hidden_act"] == "gelu"  # open_clip's nn.GELU, not transformers' CLIP default quick_gelu
    wrong = CLIPVisionModel.from_pretrained(tmp_path / "hf", hidden_act="quick_gelu").eval()
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        drift = (
            wrong(pixel_values=pixels).last_hidden_state - _open_clip_hidden_states(model.visual, pixels)[-1]
        ).abs()
    assert drift.max().item() > 10 * ATOL
    assert (
        hf_vision_config_dict({"embed_dim": 8, "quick_gelu": True, "vision_cfg": {"layers": 1, "width": 64}})[
            "hidden_act"
        ]
        == "quick_gelu"
    )


@pytest.mark.parametrize("resize_mode", ["squash", "shortest"])
def test_image_processor_matches_open_clip_preprocess(
    tokenizer_dir: Path, tmp_path: Path, resize_mode: str
) -> None:
    _, preprocess, cfg = _random_open_clip(
        tokenizer_dir, tmp_path / "oc", quick_gelu=False, resize_mode=resize_mode
    )
    main(["--open-clip", str(tmp_path / "oc"), "--out", str(tmp_path / "hf")])
    processor = CLIPImageProcessor.from_pretrained(tmp_path / "hf")
    if resize_mode == "squash":
        assert (processor.size.height, processor.size.width, processor.do_center_crop) == (32, 32, False)
    else:
        assert (processor.size.shortest_edge, processor.do_center_crop) == (32, True)
        assert (processor.crop_size.height, processor.crop_size.width) == (32, 32)
    assert processor.image_mean == pytest.approx(list(cfg.image_mean))
    assert processor.image_std == pytest.approx(list(cfg.image_std))
    rng = np.random.default_rng(0)
    same_size = Image.fromarray(rng.integers(0, 256, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8))
    ours = processor(images=same_size, return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(ours, preprocess(same_size), atol=1e-5)  # no resize: rescale + normalise only
    # A larger, non-square image: both squash (or resize the short side and centre-crop); resamplers round apart.
    smooth = Image.fromarray(np.kron(rng.integers(0, 256, (6, 9, 3)), np.ones((8, 8, 1))).astype(np.uint8))
    ours, theirs = processor(images=smooth, return_tensors="pt")["pixel_values"][0], preprocess(smooth)
    assert ours.shape == theirs.shape == (3, cfg.image_size, cfg.image_size)
    assert (ours - theirs).abs().mean().item() < 0.005 and (ours - theirs).abs().max().item() < 0.1


def test_unsupported_configs_and_weights_raise(tokenizer_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ClipConversionError, match="ls_init_value"):
        hf_vision_config_dict(
            {"embed_dim": 8, "vision_cfg": {"layers": 1, "width": 64, "ls_init_value": 0.1}}
        )
    with pytest.raises(ClipConversionError, match="pool_type"):
        hf_vision_config_dict({"embed_dim": 8, "vision_cfg": {"layers": 1, "width": 64, "pool_type": "avg"}})
    _random_open_clip(tokenizer_dir, tmp_path / "oc", quick_gelu=False)
    state = load_file(str(tmp_path / "oc" / "open_clip_model.safetensors"))
    layers = TinyClipConfig.tiny().vision_layers
    mapped = convert_visual_state_dict(state, layers, with_projection=True)
    assert mapped["visual_projection.weight"].shape == state["visual.proj"].T.shape
    # A REACT gated block (or anything else) in the tower must not be dropped silently.
    extra = dict(state, **{"visual.transformer.resblocks.0.gated_attn.gate": torch.zeros(1)})
    with pytest.raises(ClipConversionError, match="gated_attn"):
        convert_visual_state_dict(extra, layers, with_projection=False)
    del state["visual.ln_pre.weight"]
    save_file(state, str(tmp_path / "oc" / "open_clip_model.safetensors"))
    with pytest.raises(ClipConversionError, match="visual.ln_pre.weight"):
        convert_open_clip_dir(tmp_path / "oc", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()  # nothing half-written
    (tmp_path / "oc" / OPEN_CLIP_CONFIG_NAME).unlink()
    with pytest.raises(ValueError, match="open_clip_config.json not found"):
        convert_open_clip_dir(tmp_path / "oc", tmp_path / "hf")
