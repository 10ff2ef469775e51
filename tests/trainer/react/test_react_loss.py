"""The gamma-positive contrastive loss against hand-computed values, UniCL and open_clip's InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch
from open_clip.loss import ClipLoss

from trainer.react.loss import gamma_positive_loss, local_gamma_positive_loss, positive_mask

THETA = math.acos(0.95)  # text 1 is at cosine 0.95 from text 0: a positive at gamma 0.9, not at 1.0
TEXTS = torch.tensor([[1.0, 0.0], [math.cos(THETA), math.sin(THETA)], [0.0, 1.0]])
IMAGES = torch.tensor([[0.6, 0.8], [1.0, 0.0], [-0.8, 0.6]])
SCALE = 2.0


def hand_loss(positives: list[list[int]]) -> float:
    """The definition written out with python floats: mean of the two directions' per-row averages."""

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    images, texts, n = IMAGES.tolist(), TEXTS.tolist(), 3
    total = 0.0
    for queries, keys in ((images, texts), (texts, images)):
        for i in range(n):
            logits = [SCALE * dot(queries[i], keys[j]) for j in range(n)]
            log_norm = math.log(sum(math.exp(v) for v in logits))
            total += -sum(logits[j] - log_norm for j in positives[i]) / len(positives[i])
    return total / (2 * n)


def test_positive_sets_follow_gamma():
    assert positive_mask(TEXTS, 0.9).tolist() == [
        [True, True, False],
        [True, True, False],
        [False, False, True],
    ]
    assert positive_mask(TEXTS, 1.0).tolist() == [
        [True, False, False],
        [False, True, False],
        [False, False, True],
    ]


@pytest.mark.parametrize(
    ("gamma", "positives"),
    [(0.9, [[0, 1], [0, 1], [2]]), (1.0, [[0], [1], [2]])],
)
def test_loss_equals_the_hand_computed_value(gamma, positives):
    value = gamma_positive_loss(IMAGES, TEXTS, torch.tensor(SCALE), gamma)
    assert value.item() == pytest.approx(hand_loss(positives), rel=1e-6)


def test_gamma_one_makes_identical_captions_positives_as_unicl():
    texts = torch.cat([TEXTS, TEXTS[:1]])  # caption 3 repeats caption 0
    mask = positive_mask(texts, 1.0)
    assert mask[0].tolist() == [True, False, False, True] and mask[3].tolist() == [True, False, False, True]


def test_unique_texts_reduce_to_open_clip_infonce():
    generator = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(16, 64, generator=generator), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(16, 64, generator=generator), dim=-1)
    assert positive_mask(texts, 0.9).sum() == 16  # only the diagonal
    scale = torch.tensor(14.3)
    expected = ClipLoss()(images, texts, scale)
    torch.testing.assert_close(gamma_positive_loss(images, texts, scale, 0.9), expected, rtol=1e-6, atol=1e-6)


def test_single_process_local_loss_is_the_whole_loss_with_gradients():
    images = IMAGES.clone().requires_grad_(True)
    backward_value, share = local_gamma_positive_loss(images, TEXTS, torch.tensor(SCALE), 0.9)
    assert backward_value.item() == share.item() == pytest.approx(hand_loss([[0, 1], [0, 1], [2]]), rel=1e-6)
    backward_value.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_bad_shapes_and_gamma_are_errors():
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        gamma_positive_loss(IMAGES, TEXTS[:2], torch.tensor(1.0), 0.9)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        gamma_positive_loss(IMAGES[:1], TEXTS[:1], torch.tensor(1.0), 0.9)
    with pytest.raises(ValueError, match="gamma must be in"):
        positive_mask(TEXTS, 0.0)
