"""Length-grouped micro-batches, deterministic in (seed, epoch).

Padding wastes compute in proportion to the length spread inside a batch, so samples of similar length go
together: shuffle, cut into mega-batches of ``batch_size * megabatch_factor`` samples, sort each by length
(longest first) and cut it into batches, then shuffle the order of the batches so the epoch does not run
from long to short (transformers' ``LengthGroupedSampler`` does the first three steps; LLaVA groups the
same way with ``group_by_modality_length``). The result is the global micro-batch plan the runtime shards
over processes (``trainer.runtime.data_order``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# transformers' LengthGroupedSampler uses mega-batches of 50 batches.
DEFAULT_MEGABATCH_FACTOR = 50


def epoch_rng(seed: int, epoch: int) -> random.Random:
    # Mixing with a large odd constant keeps (seed, epoch) pairs from colliding (seed 1 epoch 0 vs seed 0 epoch 1).
    return random.Random(seed * 1_000_003 + epoch)


def length_grouped_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    group_by_length: bool = True,
    megabatch_factor: int = DEFAULT_MEGABATCH_FACTOR,
) -> list[list[int]]:
    """Every index exactly once, in batches of ``batch_size`` (the last batch of a mega-batch may be short)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if megabatch_factor < 1:
        raise ValueError(f"megabatch_factor must be >= 1, got {megabatch_factor}")
    rng = epoch_rng(seed, epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    mega = batch_size * megabatch_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        # Stable sort on a shuffled chunk: equal lengths keep their random order.
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of padded positions over all batches (0 = no padding), to compare grouping choices."""
    total = padded = 0
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        total += longest * len(batch)
        padded += sum(longest - lengths[i] for i in batch)
    return padded / total if total else 0.0
