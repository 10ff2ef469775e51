"""Caption-bucketed batches: hard negatives for contrastive training, chosen from the caption text alone.

In SynthWorld colour is the easiest visual cue. In a random batch of 64 the colour word alone narrows a caption
to a handful of candidates, so a tiny CLIP learns colour first, its text tower learns to ignore the shape words
(their embeddings collapse together), and the image tower never gets a shape signal. Measured on the default
world: after 3 epochs the shape linear probe was at chance while a supervised ViT of the same size reaches 68%
in 1000 steps. A batch whose captions all name the same colour makes colour useless inside the batch: only
shape, pattern, size and position words can tell its pairs apart. A share of such batches, mixed with ordinary
random ones, restores the shape gradient. Buckets come from caption words only (never from ground truth).

Also here: the endless batches of the pairs whose caption names a shape, which ``clip_train``'s shape warm-up
reads before any contrastive step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from trainer.foundation.clip_aux import IGNORE
from trainer.foundation.clip_data import PoolPairsDataset, make_loader

NO_BUCKET = -1


def caption_buckets(captions: Sequence[str], bucket_words: Sequence[str]) -> list[int]:
    """Bucket of each caption: the index in ``bucket_words`` of its first matching word, else ``NO_BUCKET``."""
    index = {word: i for i, word in enumerate(bucket_words)}
    buckets = []
    for caption in captions:
        hits = [index[w] for w in caption.lower().split() if w in index]
        buckets.append(hits[0] if hits else NO_BUCKET)
    return buckets


def plan_batches(
    buckets: Sequence[int], batch_size: int, homogeneous_fraction: float, generator: torch.Generator
) -> list[list[int]]:
    """One epoch of batches (every full batch; the remainder is dropped).

    From each real bucket, ``homogeneous_fraction`` of its items (rounded down to whole batches) form
    single-bucket batches; all other items are shuffled together into ordinary mixed batches. Batch order is
    shuffled, so hard and ordinary batches interleave.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}")
    if not 0.0 <= homogeneous_fraction <= 1.0:
        raise ValueError(f"homogeneous_fraction must be in [0, 1], got {homogeneous_fraction}")
    by_bucket: dict[int, list[int]] = {}
    for item, bucket in enumerate(buckets):
        by_bucket.setdefault(bucket, []).append(item)
    batches: list[list[int]] = []
    mixed: list[int] = []
    for bucket in sorted(by_bucket):
        items = by_bucket[bucket]
        order = [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]
        n_homogeneous = 0
        if bucket != NO_BUCKET:
            n_homogeneous = int(len(order) * homogeneous_fraction) // batch_size * batch_size
        batches += [order[i : i + batch_size] for i in range(0, n_homogeneous, batch_size)]
        mixed += order[n_homogeneous:]
    mixed = [mixed[i] for i in torch.randperm(len(mixed), generator=generator).tolist()]
    batches += [mixed[i : i + batch_size] for i in range(0, len(mixed) - batch_size + 1, batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


class BucketBatchSampler(Sampler[list[int]]):
    """Seeded batch sampler over ``plan_batches``; each epoch draws a fresh plan from its own generator."""

    def __init__(
        self, buckets: Sequence[int], batch_size: int, homogeneous_fraction: float, seed: int
    ) -> None:
        self.buckets = list(buckets)
        self.batch_size = batch_size
        self.homogeneous_fraction = homogeneous_fraction
        self.generator = torch.Generator().manual_seed(seed)
        # Validate eagerly and fix the length (the count of full batches is the same for every epoch).
        self._length = len(plan_batches(self.buckets, batch_size, homogeneous_fraction, torch.Generator()))

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[list[int]]:
        yield from plan_batches(self.buckets, self.batch_size, self.homogeneous_fraction, self.generator)


def batches_forever(loader: Iterable[Any]) -> Iterator[Any]:
    """Batches of ``loader`` epoch after epoch (training stops on a step or time budget, not on epochs)."""
    while True:
        yield from loader


def named_subset_batches(
    dataset: PoolPairsDataset,
    word_targets: torch.Tensor,
    column: int,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    where: str,
) -> tuple[Iterator[Any], torch.Tensor]:
    """Endless shuffled batches of the pairs whose caption names a word of group ``column`` of ``word_targets``
    ([N, G], ``clip_aux.caption_word_targets``), and those pairs' rows in ``dataset`` [M].

    Batch indices point into the returned rows (``rows[index]`` are dataset rows). Used by the shape warm-up, where a caption without a shape
    word carries no signal. Fewer such pairs than one batch raises naming ``where``.
    """
    named = (word_targets[:, column] != IGNORE).nonzero().squeeze(1).tolist()
    if len(named) < batch_size:
        raise ValueError(
            f"{where}: only {len(named)} captions name a word of the group, fewer than a batch of {batch_size}"
        )
    subset = PoolPairsDataset([dataset.pairs[i] for i in named], dataset.token_ids[named], dataset.transform)
    loader = make_loader(subset, batch_size=batch_size, num_workers=num_workers, seed=seed)
    return batches_forever(loader), torch.tensor(named, dtype=torch.long)
