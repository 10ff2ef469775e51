"""Dense patch supervision from train-scene annotations (clip_dense): patch labels by hand, the loss by hand,
the shape-first warm-up, tiles of a generated tiny world, and a few training steps through clip_train."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trainer.foundation.clip_aux import IGNORE
from trainer.foundation.clip_dense import (
    BACKGROUND,
    DENSE_GROUPS,
    DensePatchHeads,
    DenseSupervision,
    dense_group_weights,
    load_dense_tiles,
    object_labels,
    patch_labels,
)
from trainer.foundation.clip_train import ClipTrainConfig, train_clip
from trainer.foundation.tokenizer import save_tokenizer, train_tokenizer
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world

SHAPE_WORDS, COLOUR_WORDS, SIGN_WORDS = DENSE_GROUPS.values()


def test_object_labels_per_group() -> None:
    assert object_labels({"shape": "star", "color": "red"}) == [
        SHAPE_WORDS.index("star"), COLOUR_WORDS.index("red"), IGNORE
    ]  # fmt: skip
    assert object_labels({"shape": None, "color": None, "text": "EXIT"}) == [
        SHAPE_WORDS.index("sign"), IGNORE, SIGN_WORDS.index("EXIT")
    ]  # fmt: skip
    assert object_labels({"shape": None, "text": "K7"}) == [SHAPE_WORDS.index("sign"), IGNORE, IGNORE]


def test_patch_labels_by_hand() -> None:
    """A 16-px tile of 8-px patches (2 x 2). The square covers the top-left patch fully and a quarter of the
    top-right one (an edge: ignored); the bottom patches are empty (background)."""
    square = [0, 0, 9.5, 0, 9.5, 7.5, 0, 7.5]  # image pixels; scale 1, no offset
    star = [SHAPE_WORDS.index("star"), COLOUR_WORDS.index("red"), IGNORE]
    labels = patch_labels([square], [star], (1.0, 1.0), (0.0, 0.0), tile=16, patch=8)
    background = SHAPE_WORDS.index(BACKGROUND)
    assert labels.tolist() == [star, [IGNORE] * 3, [background, IGNORE, IGNORE], [background, IGNORE, IGNORE]]
    # the same square through a tile that starts 5 image px to the right, at scale 2: it spans tile x -10..9,
    # so the left patches are covered and the right ones only on 2 of 8 columns (edges)
    labels = patch_labels([square], [star], (2.0, 2.0), (5.0, 0.0), tile=16, patch=8)
    assert labels.tolist() == [star, [IGNORE] * 3, star, [IGNORE] * 3]
    assert patch_labels([], [], (1.0, 1.0), (0.0, 0.0), 16, 8)[:, 0].tolist() == [background] * 4


def test_dense_loss_by_hand_and_the_shape_first_warm_up() -> None:
    heads = DensePatchHeads(width=4)
    with torch.no_grad():
        heads.linear.weight.zero_()
        heads.linear.bias.zero_()
    tokens = torch.randn(2, 3, 4)
    labels = torch.full((2, 3, 3), IGNORE)
    labels[0, 0] = torch.tensor([0, 1, IGNORE])
    labels[1, 2] = torch.tensor([SHAPE_WORDS.index("sign"), IGNORE, 3])
    sizes = [len(words) for words in DENSE_GROUPS.values()]
    # all logits 0: each labelled patch costs log(group size), averaged over the group's labelled patches
    everything = math.log(sizes[0]) + math.log(sizes[1]) + math.log(sizes[2])
    assert heads.loss(tokens, labels, [1.0, 1.0, 1.0]).item() == pytest.approx(everything, rel=1e-5)
    assert heads.loss(tokens, labels, [1.0, 0.0, 0.0]).item() == pytest.approx(math.log(sizes[0]), rel=1e-5)
    assert heads.loss(tokens, torch.full((2, 3, 3), IGNORE), [1.0] * 3).item() == 0.0
    assert dense_group_weights(("shape", "color"), warming_up=True, warmup_group="shape") == [1.0, 0.0, 0.0]
    assert dense_group_weights(("shape", "color"), warming_up=False, warmup_group="shape") == [1.0, 1.0, 0.0]
    assert dense_group_weights(("color",), warming_up=True, warmup_group="shape") == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="unknown dense group"):
        dense_group_weights(("texture",), False, "shape")
    with pytest.raises(ValueError, match="unknown dense group"):
        ClipTrainConfig(dense_groups=("texture",))
    assert ClipTrainConfig.default().dense_weight == 0.0  # off unless measured to help


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dense") / "world"
    generate_world(out, WorldConfig.preset("tiny"), seed=0, workers=1)
    return out


@pytest.mark.slow
def test_tiles_of_a_tiny_world_label_what_is_drawn(tiny_world: Path) -> None:
    tiles = load_dense_tiles(tiny_world, max_scenes=6, tile=32, patch=8)
    assert len(tiles) == 6 * 5  # one base tile and four AnyRes tiles per scene
    assert tiles.pixels.shape == (30, 3, 32, 32) and tiles.pixels.dtype == torch.uint8
    assert tiles.labels.shape == (30, 16, 3)
    shapes = tiles.labels[..., 0]
    background = SHAPE_WORDS.index(BACKGROUND)
    assert (shapes == background).any() and ((shapes >= 0) & (shapes < background)).any()
    # colour is labelled only where a shape is, and background patches are light or dark but plain: the
    # labelled colour patches are on average more saturated than background patches
    pixels = tiles.pixels.float().reshape(30, 3, 4, 8, 4, 8).permute(0, 2, 4, 1, 3, 5).reshape(30, 16, 3, -1)
    saturation = (pixels.amax(2) - pixels.amin(2)).mean(-1)
    coloured = tiles.labels[..., 1] >= 0
    assert saturation[coloured].mean() > saturation[shapes == background].mean() + 30
    supervision = DenseSupervision(tiles, 16, ("shape",), 8, (0.5,) * 3, (0.25,) * 3, seed=0)
    seen = [supervision.next_batch() for _ in range(5)]  # 40 > 30 tiles: crosses an epoch
    assert all(batch[0].shape == (8, 3, 32, 32) and batch[1].shape == (8, 16, 3) for batch in seen)
    assert np.isclose(float(seen[0][0].float().mean()), float(seen[0][0].mean()))


@pytest.mark.slow
def test_clip_train_with_dense_labels_runs_and_logs_the_loss(tiny_world: Path, tmp_path: Path) -> None:
    tokenizer = tmp_path / "tok"
    save_tokenizer(train_tokenizer(["red star sign EXIT", "blue circle icon", "a ring"] * 30, 300), tokenizer)
    cfg = replace(
        ClipTrainConfig.tiny(),
        max_steps=4,
        num_workers=0,
        torch_threads=1,
        val_count=0,
        log_every=1,
        shape_warmup_fraction=0.5,
        dense_weight=1.0,
        dense_groups=("shape", "color", "sign_word"),
        dense_scenes=8,
        dense_batch=4,
    )
    metrics = train_clip(tiny_world, tokenizer, tmp_path / "clip", cfg, progress_bar=False)
    losses = [h["dense_loss"] for h in metrics["history"]]
    assert metrics["steps"] == 4 and all(loss is not None and loss > 0 for loss in losses)
    assert metrics["samples_seen"] == 4 * cfg.batch_size  # dense tiles are not pool pairs


@pytest.mark.slow
def test_init_from_continues_from_saved_weights(tiny_world: Path, tmp_path: Path) -> None:
    """``init_from`` loads a saved CLIP's weights before training (the continuation screens of issue #18)."""
    tokenizer = tmp_path / "tok"
    save_tokenizer(train_tokenizer(["red star sign EXIT", "blue circle icon", "a ring"] * 30, 300), tokenizer)
    base = replace(ClipTrainConfig.tiny(), max_steps=2, num_workers=0, torch_threads=1, val_count=0)
    train_clip(tiny_world, tokenizer, tmp_path / "first", replace(base, seed=1), progress_bar=False)
    tiny_lr = replace(
        base, max_steps=1, lr=1e-9, shape_warmup_fraction=0.0, init_from=str(tmp_path / "first")
    )
    train_clip(tiny_world, tokenizer, tmp_path / "continued", tiny_lr, progress_bar=False)
    train_clip(
        tiny_world, tokenizer, tmp_path / "fresh", replace(tiny_lr, init_from=None), progress_bar=False
    )
    first, continued, fresh = (
        load_file(str(tmp_path / name / "open_clip_model.safetensors"))
        for name in ("first", "continued", "fresh")
    )
    key = "visual.conv1.weight"
    assert torch.allclose(continued[key], first[key], atol=1e-6)
    assert not torch.allclose(fresh[key], first[key], atol=1e-3)
