"""Auxiliary caption-word heads for tiny-CLIP training (discarded after training; the saved model is plain CLIP).

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

from trainer.synthworld.concepts import COLOR_NAMES, PATTERNS, SHAPES, SPECIES

IGNORE = -100  # torch.nn.functional.cross_entropy's default ignore_index

CONCEPT_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": COLOR_NAMES,
    "pattern": tuple(p for p in PATTERNS if p != "plain"),
    "species": tuple(s.name for s in SPECIES),
}


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
