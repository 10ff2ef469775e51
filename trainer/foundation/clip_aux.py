"""Auxiliary caption-word heads for tiny-CLIP training, on the image embedding (``CaptionWordHeads``) and on the
patch tokens (``PatchWordHeads``); discarded after training, the saved model is plain CLIP.

Why: contrastively, a tiny ViT learns colour at once but shape not at all within the CPU budget. Early image
features carry no shape, so the text tower collapses all shape words onto one embedding and the image tower then
gets no shape gradient (measured on the default world: shape linear probe at chance after 3 epochs, cosine 1.00
between the text embeddings of "star" and "circle"). The same ViT trained on a direct label learns shapes in a
few hundred steps. So, as in weakly supervised pretraining on alt-text words (Joulin et al. 2016), small linear
heads on the image embedding predict which concept word of each group the caption uses ("star" in "red star
icon"). Targets come from the caption text only, never from the world's ground truth; a caption without a word
of a group is ignored for that group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainer.synthworld.concepts import COLOR_NAMES, PATTERNS, SHAPES, SIGN_WORDS, SPECIES

IGNORE = -100  # torch.nn.functional.cross_entropy's default ignore_index

CONCEPT_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": COLOR_NAMES,
    "pattern": tuple(p for p in PATTERNS if p != "plain"),
    "species": tuple(s.name for s in SPECIES),
}


# The words signs say (``concepts.SIGN_WORDS``) as one more patch-head group: the patches over a sign have to
# say which word it shows (``caption_sign_word_multi_hot``).
SIGN_WORD_GROUPS: dict[str, tuple[str, ...]] = {"sign_word": SIGN_WORDS}


def caption_sign_word(caption: str) -> str | None:
    """The first word of ``caption`` that is a sign word, in upper case as signs write it ("a sign that says
    EXIT", "EXIT sign"), or None. Case matters: lower-case "open" or "sale" in alt-text is not a sign."""
    for word in caption.split():
        word = word.strip(".,;:!?\"'()")
        if word in SIGN_WORDS:
            return word
    return None


def caption_sign_word_multi_hot(captions: Sequence[str]) -> torch.Tensor:
    """[N, len(SIGN_WORDS)] 0/1, laid out like ``caption_word_multi_hot`` over ``SIGN_WORD_GROUPS``: the sign
    word the caption names; all-zero rows (no sign word) are ignored by ``PatchWordHeads.loss``."""
    targets = torch.zeros((len(captions), len(SIGN_WORDS)))
    for row, caption in enumerate(captions):
        word = caption_sign_word(caption)
        if word is not None:
            targets[row, SIGN_WORDS.index(word)] = 1.0
    return targets


def patch_head_groups(
    sign_weight: float, warmup_group: str
) -> tuple[dict[str, tuple[str, ...]], list[float], list[float]]:
    """The patch heads' groups (``CONCEPT_GROUPS``, then ``SIGN_WORD_GROUPS`` unless ``sign_weight`` is 0),
    their weights after the warm-up (1 per concept group, ``sign_weight`` for the sign words) and during it
    (only ``warmup_group``)."""
    groups = dict(CONCEPT_GROUPS)
    weights = [1.0] * len(groups)
    if sign_weight > 0:
        groups.update(SIGN_WORD_GROUPS)
        weights += [sign_weight] * len(SIGN_WORD_GROUPS)
    warmup = [1.0 if name == warmup_group else 0.0 for name in groups]
    return groups, weights, warmup


def caption_word_targets(captions: Sequence[str], groups: dict[str, tuple[str, ...]]) -> torch.Tensor:
    """[N, G] class index per caption and group: the first word of the group in the caption, else ``IGNORE``.

    The first mention is taken because web captions name the main object first ("triangle and red ring").
    """
    lookup = [{word: i for i, word in enumerate(words)} for words in groups.values()]
    targets = torch.full((len(captions), len(groups)), IGNORE, dtype=torch.long)
    for row, caption in enumerate(captions):
        for word in caption.lower().split():
            for column, index in enumerate(lookup):
                if targets[row, column] == IGNORE and word in index:
                    targets[row, column] = index[word]
    return targets


class CaptionWordHeads(nn.Module):
    """One linear classifier per concept group on the (normalised) image embedding."""

    def __init__(self, embed_dim: int, groups: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.sizes = [len(words) for words in groups.values()]
        self.linear = nn.Linear(embed_dim, sum(self.sizes))

    def loss(
        self,
        image_features: torch.Tensor,
        targets: torch.Tensor,
        group_weights: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """Sum over groups of the cross-entropy on the captions naming a word of that group ([B, D], [B, G]),
        each multiplied by its ``group_weights`` entry (default 1; the shape warm-up zeroes all but shape).

        A sum, not a mean: each group is its own task, and averaging would cut the shape signal by the group count.
        """
        logits = self.linear(image_features).split(self.sizes, dim=-1)
        losses = []
        for column, group_logits in enumerate(logits):
            target = targets[:, column]
            if (target != IGNORE).any():
                weight = 1.0 if group_weights is None else group_weights[column]
                losses.append(weight * nn.functional.cross_entropy(group_logits, target, ignore_index=IGNORE))
        if not losses:
            return image_features.new_zeros(())
        return torch.stack(losses).sum()


def caption_word_multi_hot(captions: Sequence[str], groups: dict[str, tuple[str, ...]]) -> torch.Tensor:
    """[N, sum of group sizes] 0/1: every concept word a caption names (all of them, not just the first)."""
    offsets, column = {}, 0
    for words in groups.values():
        for i, word in enumerate(words):
            offsets.setdefault(word, []).append(column + i)
        column += len(words)
    targets = torch.zeros((len(captions), column))
    for row, caption in enumerate(captions):
        for word in caption.lower().split():
            for index in offsets.get(word, ()):
                targets[row, index] = 1.0
    return targets


class PatchWordHeads(nn.Module):
    """Multiple-instance caption-word heads on the ViT's patch tokens (the layer LLaVA's projector reads).

    Why: the pooled heads above teach the image *embedding* shapes, but a LLaVA answers "what colour is the
    star?" from patch tokens, and the tiny ViT's layer -2 patches carried almost none of it (linear probe at an
    object's centre, held-out scenes on a 2x2 tile canvas: shape 0.29, colour 0.70). Each patch scores every
    concept word; an image's score for a word is its best patch's (max pooling, as in weakly supervised
    localisation, Oquab et al. 2015), trained multi-label against the words of its caption. The only cheap way
    for one patch to say "star" is to look at the star, so the evidence stays where the object is (same probe
    after a 7-minute run with these heads: shape 0.38, colour 0.74). Targets are caption words only; a group
    the caption does not mention is ignored for that caption.
    """

    def __init__(self, width: int, groups: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.sizes = [len(words) for words in groups.values()]
        # The patch tokens share a large common component (norm ~30); a non-affine LayerNorm removes its scale.
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.linear = nn.Linear(width, sum(self.sizes))

    def loss(
        self,
        patch_tokens: torch.Tensor,
        multi_hot: torch.Tensor,
        group_weights: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """Sum over groups of the per-caption multi-label BCE (summed over the group's words, averaged over the
        captions naming one), on max-over-patches logits. ``patch_tokens`` [B, P, W], ``multi_hot`` [B, K];
        ``group_weights`` as in ``CaptionWordHeads.loss`` (a zero weight skips the group)."""
        pooled = self.linear(self.norm(patch_tokens)).amax(dim=1)  # [B, K]
        losses = []
        groups = zip(pooled.split(self.sizes, -1), multi_hot.split(self.sizes, -1))
        for column, (group_logits, group_targets) in enumerate(groups):
            weight = 1.0 if group_weights is None else group_weights[column]
            named = group_targets.sum(-1) > 0
            if weight and named.any():
                bce = nn.functional.binary_cross_entropy_with_logits(
                    group_logits[named], group_targets[named], reduction="none"
                )
                losses.append(weight * bce.sum(-1).mean())
        if not losses:
            return patch_tokens.new_zeros(())
        return torch.stack(losses).sum()


class PatchTokens:
    """The patch tokens (class token dropped) an open_clip ``VisionTransformer`` block produced in its latest
    forward, kept by a forward hook so training reads them without a second forward."""

    def __init__(self, visual: nn.Module, layer: int) -> None:
        transformer = visual.transformer
        self._batch_first = bool(getattr(transformer, "batch_first", True))
        self._tokens: torch.Tensor | None = None
        self._handle = transformer.resblocks[layer].register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        self._tokens = output

    def latest(self) -> torch.Tensor:
        """[B, P, W] from the latest forward."""
        if self._tokens is None:
            raise RuntimeError("PatchTokens.latest() before any forward of the vision tower")
        tokens = self._tokens if self._batch_first else self._tokens.transpose(0, 1)
        return tokens[:, 1:, :]

    def remove(self) -> None:
        self._handle.remove()
