"""Retrieval algorithms as pure numpy functions: exact top-k, re-ranking, recall@k, per-class union, dedup.

Conventions: vectors are L2-normalised float32 rows, similarity is the inner product (= cosine), ids are row
numbers into the index metadata, and -1 marks "no result" (FAISS' padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# clip-retrieval's near-duplicate threshold (cosine of the result embeddings).
DEFAULT_DEDUP_THRESHOLD = 0.94
_QUERY_BLOCK = 64  # queries re-ranked at once: bounds the [block, candidates, D] gather


@dataclass(frozen=True)
class PromptQuery:
    """One prompt: a class name formatted into one template. Each prompt is its own query (as REACT)."""

    class_name: str
    template: str
    text: str


@dataclass(frozen=True)
class ClassHit:
    """One pool row retrieved for a class, with every (query, similarity) that hit it, best first."""

    id: int
    similarity: float  # the best similarity over all the class' prompts
    query: str  # the prompt that gave it
    hits: tuple[tuple[str, float], ...]


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product: ([Q, k] scores, [Q, k] ids), best first, ties by lower id."""
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T  # [Q, N]
    k = min(k, scores.shape[1])
    # Stable sort on -score keeps the lower id first among equal scores.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order.astype(np.int64)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k (the ANN-benchmark "k-recall@k")."""
    approx_ids, exact_ids = np.asarray(approx_ids), np.asarray(exact_ids)
    if approx_ids.shape[0] != exact_ids.shape[0]:
        raise ValueError(f"{approx_ids.shape[0]} approximate vs {exact_ids.shape[0]} exact result rows")
    if k <= 0 or approx_ids.shape[1] < k or exact_ids.shape[1] < k:
        raise ValueError(f"need k in [1, {min(approx_ids.shape[1], exact_ids.shape[1])}], got {k}")
    found = [
        len(set(a[:k].tolist()) & set(e[:k].tolist()) - {-1})
        for a, e in zip(approx_ids, exact_ids, strict=True)
    ]
    return float(np.mean(found)) / k


def rerank_exact(
    queries: np.ndarray, candidates: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidate ids [Q, C] exactly against ``vectors`` (e.g. a memory map) and keep the best ``k``.

    Only the rows that some query needs are read, once each, in increasing order (friendly to a memory map).
    """
    queries = np.asarray(queries, dtype=np.float32)
    candidates = np.asarray(candidates, dtype=np.int64)
    k = min(k, candidates.shape[1])
    out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(queries), _QUERY_BLOCK):
        block = candidates[start : start + _QUERY_BLOCK]
        valid = block >= 0
        unique, position = np.unique(np.where(valid, block, 0), return_inverse=True)
        rows = np.asarray(vectors[unique], dtype=np.float32)  # [U, D]
        gathered = rows[position.reshape(block.shape)]  # [B, C, D]
        scores = np.einsum("bcd,bd->bc", gathered, queries[start : start + _QUERY_BLOCK])
        scores = np.where(valid, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out_scores[start : start + len(block)] = np.take_along_axis(scores, order, axis=1)
        out_ids[start : start + len(block)] = np.where(
            np.isfinite(out_scores[start : start + len(block)]), np.take_along_axis(block, order, axis=1), -1
        )
    return out_scores, out_ids


def union_per_class(
    queries: Sequence[PromptQuery], scores: np.ndarray, ids: np.ndarray
) -> dict[str, list[ClassHit]]:
    """Merge the top-k of every prompt into one list per class (REACT dedups within a class, not across).

    Each row keeps every (prompt, similarity) that hit it; rows are ordered by best similarity, then id.
    Classes appear in the order of their first prompt.
    """
    if len(queries) != len(scores) or scores.shape != ids.shape:
        raise ValueError(f"{len(queries)} prompts vs scores {scores.shape} and ids {ids.shape}")
    merged: dict[str, dict[int, list[tuple[str, float]]]] = {}
    for query, row_scores, row_ids in zip(queries, scores, ids, strict=True):
        per_class = merged.setdefault(query.class_name, {})
        for score, row in zip(row_scores.tolist(), row_ids.tolist(), strict=True):
            if row >= 0:
                per_class.setdefault(row, []).append((query.text, score))
    result = {}
    for class_name, rows in merged.items():
        hits = []
        for row, found in rows.items():
            found.sort(key=lambda pair: -pair[1])
            hits.append(ClassHit(id=row, similarity=found[0][1], query=found[0][0], hits=tuple(found)))
        hits.sort(key=lambda hit: (-hit.similarity, hit.id))
        result[class_name] = hits
    return result


def near_duplicate_keep(
    vectors: np.ndarray, threshold: float = DEFAULT_DEDUP_THRESHOLD, *, block: int = 1024
) -> np.ndarray:
    """Keep-mask over ranked rows: link rows with cosine >= threshold, keep the first row of each component.

    This is clip-retrieval's rule (range search, connected components, keep the first). Pairs are found block
    by block, so memory is [block, n], not [n, n].
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold}")
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, block):
        sims = vectors[start : start + block] @ vectors.T  # [b, n]
        rows, cols = np.nonzero(sims >= threshold)
        for i, j in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if j > i:
                root_i, root_j = find(i), find(j)
                if root_i != root_j:
                    # The component's root is its lowest (best-ranked) row.
                    parent[max(root_i, root_j)] = min(root_i, root_j)
    return np.array([find(i) == i for i in range(n)], dtype=bool)
