"""Model specs, offline errors, and batched text/image embedding with a random-weight tiny CLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from react_explorer.embedding.encoders import ClipEncoder, load_encoder
from react_explorer.embedding.model_spec import (
    DEFAULT_MODEL_DIR,
    ModelSpec,
    offline_from_env,
    parse_model_spec,
)
from react_explorer.errors import EncoderLoadError, MissingImagesError, PoolFormatError
from tests.support.react_support import save_random_tiny_clip, toy_image, write_toy_pool
from vision_common.tiny_clip import TinyClipConfig, create_tiny_clip, register_tiny_clip


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return save_random_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def encoder(clip_dir) -> ClipEncoder:
    return load_encoder(parse_model_spec(f"local-dir:{clip_dir}"))


def test_parse_model_spec(tmp_path):
    assert parse_model_spec(None) == ModelSpec("local_dir", str(DEFAULT_MODEL_DIR))
    assert parse_model_spec(f"local-dir:{tmp_path}").describe() == f"local-dir:{tmp_path.resolve()}"
    assert parse_model_spec(str(tmp_path)) == ModelSpec("local_dir", str(tmp_path.resolve()))
    assert parse_model_spec("hf-hub:org/clip") == ModelSpec("hf_hub", "org/clip")
    named = parse_model_spec("ViT-B-32", "laion2b_s34b_b79k")
    assert named == ModelSpec("named", "ViT-B-32", "laion2b_s34b_b79k")
    assert named.describe() == "ViT-B-32/laion2b_s34b_b79k"
    for model, pretrained, message in [
        (f"local-dir:{tmp_path}", "tag", "carries its own weights"),
        ("hf-hub:org/clip", "tag", "carries its own weights"),
        (None, "tag", "--pretrained needs --model"),
        ("local-dir:", None, "needs a directory path"),
        ("hf-hub:", None, "needs a repository id"),
    ]:
        with pytest.raises(EncoderLoadError, match=message):
            parse_model_spec(model, pretrained)
    with pytest.raises(ValueError, match="conflicts"):
        ModelSpec("hf_hub", "org/clip", "tag")


def test_offline_switches():
    assert offline_from_env({"HF_HUB_OFFLINE": "1"}) and offline_from_env({"TRANSFORMERS_OFFLINE": "true"})
    assert not offline_from_env({}) and not offline_from_env({"HF_HUB_OFFLINE": "0"})


def test_load_errors_are_clear_offline(tmp_path):
    with pytest.raises(EncoderLoadError, match="needs a download but HF_HUB_OFFLINE"):
        load_encoder(ModelSpec("hf_hub", "laion/CLIP-ViT-B-32"), offline=True)
    with pytest.raises(EncoderLoadError, match="the tag needs a download but the hub is offline"):
        load_encoder(ModelSpec("named", "ViT-B-32", "laion2b_s34b_b79k"), offline=True)
    with pytest.raises(EncoderLoadError, match="give --pretrained"):
        load_encoder(ModelSpec("named", "ViT-B-32"), offline=True)
    with pytest.raises(EncoderLoadError, match="checkpoint file .*missing.pt not found"):
        load_encoder(ModelSpec("named", "ViT-B-32", str(tmp_path / "missing.pt")), offline=True)
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(EncoderLoadError, match="unknown open_clip model 'NoSuchModel-7'"):
        load_encoder(ModelSpec("named", "NoSuchModel-7", str(tmp_path / "weights.pt")), offline=True)
    with pytest.raises(EncoderLoadError, match="has no open_clip_config.json"):
        load_encoder(ModelSpec("local_dir", str(tmp_path)), offline=True)


def test_named_model_with_local_checkpoint(tmp_path, clip_dir):
    """An open_clip model name + a local .safetensors file loads offline (the "local checkpoint" route)."""
    model, _, _, _ = create_tiny_clip(TinyClipConfig.tiny(), clip_dir, seed=3)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    name = register_tiny_clip(
        TinyClipConfig.tiny(), clip_dir
    )  # the open_clip model name of that architecture
    loaded = load_encoder(parse_model_spec(name, str(weights)), offline=True)
    assert loaded.model_id == f"{name}/{weights.resolve()}" and loaded.dim == 32
    state = loaded.model.state_dict()
    assert all(np.array_equal(state[k].numpy(), v.numpy()) for k, v in model.state_dict().items())


def test_text_embeddings_are_unit_deterministic_and_batch_invariant(encoder):
    texts = ["red square", "blue circle", "red square", "a yellow star icon"] * 3
    one = encoder.embed_texts(texts, batch_size=1)
    many = encoder.embed_texts(texts, batch_size=8)
    assert one.shape == (12, 32) and one.dtype == np.float32 and encoder.dim == 32
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(one, many, atol=1e-5)
    assert np.array_equal(many[0], many[2])
    assert float(many[0] @ many[1]) < 0.9999
    with pytest.raises(ValueError, match="no texts"):
        encoder.embed_texts([])


@pytest.mark.slow  # DataLoader worker processes
def test_image_files_match_in_memory_images_with_and_without_workers(tmp_path, encoder):
    pool = write_toy_pool(tmp_path, count=6)
    paths = sorted((pool.parent / "images").glob("*.png"))
    inline = encoder.embed_image_files(paths, batch_size=4, num_workers=0)
    parallel = encoder.embed_image_files(paths, batch_size=4, num_workers=2)
    from_pil = encoder.embed_pil_images([toy_image(i) for i in range(6)])
    assert inline.shape == (6, 32)
    np.testing.assert_allclose(inline, parallel, atol=1e-6)
    np.testing.assert_allclose(inline, from_pil, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(inline, axis=1), 1.0, rtol=1e-5)


def test_missing_and_broken_image_files_name_rows(tmp_path, encoder):
    write_toy_pool(tmp_path, count=5)
    paths = sorted((tmp_path / "images").glob("*.png"))
    names = [f"row {i} (key '{i:09d}')" for i in range(5)]
    paths[1].unlink()
    paths[3].unlink()
    with pytest.raises(
        MissingImagesError, match=r"2 of 5 pool images are missing \(first: row 1 \(key '000000001'\)"
    ):
        encoder.embed_image_files(paths, row_names=names, num_workers=0)
    toy_image(1).save(paths[1])
    toy_image(3).save(paths[3])
    paths[2].write_bytes(b"\x89PNG broken")
    with pytest.raises(
        PoolFormatError, match=r"pool row 2 \(key '000000002'\): cannot decode image .*0002.png"
    ):
        encoder.embed_image_files(paths, row_names=names, num_workers=0)
