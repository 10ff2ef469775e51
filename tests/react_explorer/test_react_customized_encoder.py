"""The explorer's encoders load a REACT-customized CLIP directory and can re-embed a pool with it."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch

from react_explorer.cli.build_index import main as build_main
from react_explorer.customized.gated_blocks import ReactModelConfig, attach_gated_blocks
from react_explorer.customized.model_dir import load_model_dir, save_model_dir
from react_explorer.embedding.encoders import load_encoder
from react_explorer.embedding.model_spec import parse_model_spec
from react_explorer.errors import EncoderLoadError
from react_explorer.index.clip_index import ClipIndex
from tests.support.react_support import save_random_tiny_clip, toy_image, write_toy_pool

logging.getLogger().setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom")
    base = save_random_tiny_clip(root)
    bundle = load_model_dir(base)
    torch.manual_seed(0)
    attach_gated_blocks(bundle.model, ReactModelConfig(last_k_layers=2))
    with torch.no_grad():
        for block in bundle.model.visual.transformer.resblocks:
            block.gated_attn_block.alpha_attn.fill_(0.7)
            block.gated_attn_block.alpha_dense.fill_(0.7)
    custom = save_model_dir(bundle.model, root / "customized", model_cfg=bundle.model_cfg,
                            preprocess_cfg=bundle.preprocess_cfg, react=ReactModelConfig(2),
                            tokenizer_dir=bundle.tokenizer_dir)  # fmt: skip
    return base, custom, bundle


def test_encoder_embeds_with_the_customized_model(dirs):
    base, custom, bundle = dirs
    encoder = load_encoder(parse_model_spec(str(custom)), offline=True)
    images = [toy_image(i, size=32) for i in range(3)]
    pixels = torch.stack([bundle.preprocess(image) for image in images])
    with torch.no_grad():
        expected_images = bundle.model.eval().encode_image(pixels, normalize=True).numpy()
        expected_texts = bundle.model.encode_text(bundle.tokenizer(["red square"]), normalize=True).numpy()
    np.testing.assert_allclose(encoder.embed_pil_images(images), expected_images, atol=1e-6)
    np.testing.assert_allclose(encoder.embed_texts(["red square"]), expected_texts, atol=1e-6)
    plain = load_encoder(parse_model_spec(str(base)), offline=True)
    assert np.abs(plain.embed_pil_images(images) - encoder.embed_pil_images(images)).max() > 1e-3
    np.testing.assert_allclose(
        plain.embed_texts(["red square"]), encoder.embed_texts(["red square"]), atol=1e-6
    )


def test_pool_is_reembedded_with_the_customized_model(dirs, tmp_path):
    _, custom, _ = dirs
    pool = write_toy_pool(tmp_path / "pool", count=12)
    assert build_main(["--pool", str(pool), "--out", str(tmp_path / "idx"), "--model", f"local-dir:{custom}",
                       "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    index = ClipIndex.load(tmp_path / "idx")
    assert index.count == 12 and str(custom) in index.model


def test_customized_dir_without_its_gated_weights_is_a_clear_error(dirs, tmp_path):
    base, custom, _ = dirs
    broken = shutil.copytree(custom, tmp_path / "broken")
    shutil.copy(base / "open_clip_model.safetensors", broken / "open_clip_model.safetensors")
    with pytest.raises(EncoderLoadError, match="react_cfg asks for gated blocks but the weights lack"):
        load_encoder(parse_model_spec(str(broken)), offline=True)
