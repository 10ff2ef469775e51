"""Coverage statistics of a per-class retrieval, as pure functions over ids and similarities.

* pairs per class, and how many of them no other class retrieved (exclusive);
* the class x class overlap matrix: entry (i, j) = pairs retrieved for both class i and class j (diagonal: the
  class' own pairs);
* a similarity histogram: counts per class over shared bin edges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_BINS = 20


@dataclass(frozen=True)
class CoverageStats:
    classes: tuple[str, ...]
    pairs: tuple[int, ...]  # distinct pairs per class
    exclusive: tuple[int, ...]  # of those, pairs that no other class retrieved
    overlap: np.ndarray  # [C, C] int64, symmetric, diagonal == pairs
    total_unique: int  # distinct pairs over all classes (the size of a cross-class deduplicated subset)


def coverage_stats(ids_per_class: Mapping[str, Sequence[int]]) -> CoverageStats:
    """Counts over the ids each class retrieved (repeats within a class count once)."""
    classes = tuple(ids_per_class)
    sets = [set(int(i) for i in ids_per_class[name]) for name in classes]
    overlap = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for i, left in enumerate(sets):
        for j in range(i, len(sets)):
            overlap[i, j] = overlap[j, i] = len(left & sets[j])
    owners = Counter(item for ids in sets for item in ids)
    exclusive = tuple(sum(1 for item in ids if owners[item] == 1) for ids in sets)
    return CoverageStats(classes, tuple(len(s) for s in sets), exclusive, overlap, len(owners))


def histogram_edges(values: Sequence[float], bins: int = DEFAULT_BINS) -> np.ndarray:
    """``bins + 1`` edges spanning the values; all-equal (or no) values get a bin of width 0.01 around them."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    low, high = float(array.min()), float(array.max())
    if high - low < 1e-9:
        low, high = low - 0.005, high + 0.005
    return np.linspace(low, high, bins + 1)


def similarity_histogram(
    similarities_per_class: Mapping[str, Sequence[float]],
    edges: np.ndarray | None = None,
    bins: int = DEFAULT_BINS,
) -> tuple[np.ndarray, np.ndarray]:
    """(edges [B+1], counts [C, B]) with shared edges; the last bin includes its right edge (as numpy)."""
    every = [float(v) for values in similarities_per_class.values() for v in values]
    edges = histogram_edges(every, bins) if edges is None else np.asarray(edges, dtype=np.float64)
    counts = np.zeros((len(similarities_per_class), len(edges) - 1), dtype=np.int64)
    for row, values in enumerate(similarities_per_class.values()):
        array = np.asarray(values, dtype=np.float64)
        counts[row], _ = np.histogram(array[np.isfinite(array)], bins=edges)
    return edges, counts
