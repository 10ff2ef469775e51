"""Patch-level caption-word heads of the tiny CLIP (clip_aux): multi-hot targets, the max-pooled multi-label loss
(hand-computed) and the hook that reads the patch tokens LLaVA's projector sees."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import CLIPVisionModel

from trainer.foundation.clip_aux import (
    CONCEPT_GROUPS,
    SIGN_WORD_GROUPS,
    PatchTokens,
    PatchWordHeads,
    caption_sign_word,
    caption_sign_word_multi_hot,
    caption_word_multi_hot,
    patch_head_groups,
)
from trainer.foundation.convert_clip import convert_open_clip_dir
from trainer.foundation.tokenizer import save_tokenizer, train_tokenizer
from trainer.synthworld.concepts import SIGN_WORDS
from vision_common.tiny_clip import TinyClipConfig, create_tiny_clip, save_open_clip_dir

GROUPS = {"shape": ("star", "ring", "square"), "color": ("red", "blue")}


def test_multi_hot_marks_every_named_word() -> None:
    hot = caption_word_multi_hot(["Red star and blue ring", "star icon", "IMG_1"], GROUPS)
    # columns: star ring square | red blue
    assert hot.tolist() == [[1, 1, 0, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_caption_sign_word_takes_the_first_upper_case_sign_word() -> None:
    assert caption_sign_word("icon a sign that says EXIT. collection STOP sticker") == "EXIT"
    assert caption_sign_word("OPEN sign and red star") == "OPEN"
    # lower case is alt-text, not a sign; codes and file names are not sign words
    for caption in ("open shop sale", "DSC01158 sign", "IMG_3370 sign", "sign K7", "sign", ""):
        assert caption_sign_word(caption) is None, caption


def test_sign_word_multi_hot_marks_the_named_word() -> None:
    hot = caption_sign_word_multi_hot(["sign STOP", "road sign", "a sign that says ZONE"])
    assert hot.shape == (3, len(SIGN_WORDS)) and list(SIGN_WORD_GROUPS) == ["sign_word"]
    assert hot[0].nonzero().flatten().tolist() == [SIGN_WORDS.index("STOP")]
    assert hot[1].sum() == 0  # no word named: the group is ignored for this caption
    assert hot[2].nonzero().flatten().tolist() == [SIGN_WORDS.index("ZONE")]
    assert (
        caption_word_multi_hot(["sign STOP"], CONCEPT_GROUPS).sum() == 0
    )  # sign words are not concept words


def test_patch_head_groups_weigh_sign_words_after_the_warm_up_only() -> None:
    groups, weights, warmup = patch_head_groups(2.0, "shape")
    assert list(groups) == [*CONCEPT_GROUPS, "sign_word"]
    assert weights == [1.0] * len(CONCEPT_GROUPS) + [2.0]
    assert warmup == [1.0 if name == "shape" else 0.0 for name in groups]
    no_signs, weights, _ = patch_head_groups(0.0, "shape")
    assert no_signs == CONCEPT_GROUPS and weights == [1.0] * len(CONCEPT_GROUPS)


def test_patch_word_loss_is_max_pooled_multi_label_bce() -> None:
    heads = PatchWordHeads(width=2, groups=GROUPS)
    with torch.no_grad():
        heads.linear.weight.zero_()
        heads.linear.bias.zero_()
        heads.linear.weight[0, 0] = 1.0  # "star" logit = the first normalised channel
    # Two patches; after the non-affine LayerNorm, [3, 1] -> [1, -1] and [1, 3] -> [-1, 1]: star logits 1 and -1.
    tokens = torch.tensor([[[3.0, 1.0], [1.0, 3.0]]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])  # the caption names "star" only; no colour word
    # shape group: BCE(max logit 1, 1) + 2 x BCE(0, 0); colour group ignored (not named).
    expected = math.log(1 + math.exp(-1.0)) + 2 * math.log(2.0)
    assert heads.loss(tokens, targets).item() == pytest.approx(expected, rel=1e-4)
    assert heads.loss(tokens, torch.zeros(1, 5)).item() == 0.0  # nothing named: no signal
    assert heads.loss(tokens, targets, group_weights=[0.0, 1.0]).item() == 0.0


def test_patch_tokens_are_the_tokens_llava_reads(tmp_path: Path) -> None:
    """The hook's tokens are what transformers' CLIPVisionModel gives LLaVA at vision_feature_layer -2."""
    tokenizer = tmp_path / "tok"
    save_tokenizer(
        train_tokenizer(["red star icon", "blue ring", "green square"] * 20, vocab_size=300), tokenizer
    )
    cfg = TinyClipConfig.tiny()
    model, *_ = create_tiny_clip(cfg, tokenizer, seed=0)
    model.eval()
    keeper = PatchTokens(model.visual, -2)
    images = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        model.encode_image(images)
    kept = keeper.latest()
    assert kept.shape == (2, (cfg.image_size // cfg.patch_size) ** 2, cfg.vision_width)  # CLS dropped
    save_open_clip_dir(model, cfg, tmp_path / "clip", tokenizer_dir=tokenizer)
    convert_open_clip_dir(tmp_path / "clip", tmp_path / "hf")
    tower = CLIPVisionModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        reference = tower(images, output_hidden_states=True).hidden_states[-2][:, 1:, :]
    torch.testing.assert_close(kept, reference, atol=1e-5, rtol=1e-4)
    keeper.remove()
    with pytest.raises(RuntimeError, match="before any forward"):
        PatchTokens(model.visual, -2).latest()


def test_sign_word_group_joins_the_patch_loss_at_its_weight() -> None:
    """With zero weights every logit is 0, so each word of a named group costs log 2: the concept groups
    the caption names count once, the named sign word group ``sign_weight`` times."""
    groups, weights, warmup = patch_head_groups(2.0, "shape")
    heads = PatchWordHeads(width=4, groups=groups)
    with torch.no_grad():
        heads.linear.weight.zero_()
        heads.linear.bias.zero_()
    captions = ["red star sign EXIT"]
    targets = torch.cat(
        [caption_word_multi_hot(captions, CONCEPT_GROUPS), caption_sign_word_multi_hot(captions)], 1
    )
    tokens = torch.randn(1, 3, 4)
    concept = (len(CONCEPT_GROUPS["shape"]) + len(CONCEPT_GROUPS["color"])) * math.log(2.0)
    signs = len(SIGN_WORDS) * math.log(2.0)
    assert heads.loss(tokens, targets, weights).item() == pytest.approx(concept + 2.0 * signs, rel=1e-5)
    shape_only = len(CONCEPT_GROUPS["shape"]) * math.log(2.0)
    assert heads.loss(tokens, targets, warmup).item() == pytest.approx(shape_only, rel=1e-5)
