"""Class-query retrieval over a loaded index: prompts -> embeddings -> top-k per prompt -> union per class -> dedup.

Also free-text, image and "more like this" queries. These functions do no file I/O; ``retrieve`` (the CLI) and
the explorer UI call them and write or show the results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from react_explorer.embedding.encoders import ClipEncoder
from react_explorer.errors import QueryError
from react_explorer.index.clip_index import ClipIndex
from react_explorer.retrieval.algorithms import (
    DEFAULT_DEDUP_THRESHOLD,
    ClassHit,
    PromptQuery,
    near_duplicate_keep,
    union_per_class,
)
from react_explorer.retrieval.prompt_templates import expand_prompts

MODES = {"t2i": "image", "t2t": "text"}  # mode -> the index the text queries search


@dataclass(frozen=True)
class RetrievalConfig:
    """k per prompt (REACT's ``--images_per_class``: 50 by default), mode, and near-duplicate removal."""

    mode: str = "t2i"
    k: int = 50
    dedup: bool = True
    dedup_threshold: float = DEFAULT_DEDUP_THRESHOLD
    text_batch_size: int = 256
    ef_search: int | None = None  # None: the index's build-time default
    nprobe: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"RetrievalConfig.mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if not isinstance(self.k, int) or self.k <= 0:
            raise ValueError(f"RetrievalConfig.k must be a positive int, got {self.k!r}")
        if not -1.0 <= self.dedup_threshold <= 1.0:
            raise ValueError(
                f"RetrievalConfig.dedup_threshold must be a cosine in [-1, 1], got {self.dedup_threshold}"
            )
        if self.text_batch_size <= 0:
            raise ValueError("RetrievalConfig.text_batch_size must be positive")

    @classmethod
    def tiny(cls, **overrides: Any) -> RetrievalConfig:
        return cls(**{"k": 5, "text_batch_size": 8, **overrides})

    @property
    def modality(self) -> str:
        return MODES[self.mode]


@dataclass(frozen=True)
class ClassRetrieval:
    """Per-class results (best first) plus how many near-duplicates dedup removed per class."""

    prompts: tuple[PromptQuery, ...]
    per_class: dict[str, list[ClassHit]]
    removed_duplicates: dict[str, int] = field(default_factory=dict)


def retrieve_classes(
    index: ClipIndex,
    encoder: ClipEncoder,
    class_names: Sequence[str],
    templates: Sequence[str],
    cfg: RetrievalConfig,
) -> ClassRetrieval:
    """Every class x template prompt is its own query; hits are merged per class and deduplicated."""
    prompts = expand_prompts(class_names, templates)
    index.check_query_dim(encoder.dim, f"model {encoder.model_id}")
    queries = encoder.embed_texts([p.text for p in prompts], batch_size=cfg.text_batch_size)
    return retrieve_with_vectors(index, prompts, queries, cfg)


def retrieve_with_vectors(
    index: ClipIndex, prompts: Sequence[PromptQuery], queries: np.ndarray, cfg: RetrievalConfig
) -> ClassRetrieval:
    """The search half of ``retrieve_classes`` for already-embedded prompts ([len(prompts), D])."""
    result = index.search(queries, cfg.k, cfg.modality, ef_search=cfg.ef_search, nprobe=cfg.nprobe)
    per_class = union_per_class(prompts, result.scores, result.ids)
    removed = {name: 0 for name in per_class}
    if cfg.dedup:
        per_class, removed = deduplicate(
            index, per_class, cfg.dedup_threshold, dedup_modality(index, cfg.modality)
        )
    return ClassRetrieval(tuple(prompts), per_class, removed)


def dedup_modality(index: ClipIndex, searched: str) -> str:
    """Near-duplicate *images* are what matters for a training subset; fall back to the searched index."""
    return "image" if "image" in index.modalities else searched


def deduplicate(
    index: ClipIndex, per_class: dict[str, list[ClassHit]], threshold: float, modality: str
) -> tuple[dict[str, list[ClassHit]], dict[str, int]]:
    kept, removed = {}, {}
    for name, hits in per_class.items():
        if not hits:
            kept[name], removed[name] = hits, 0
            continue
        keep = near_duplicate_keep(index.vectors(np.array([h.id for h in hits]), modality), threshold)
        kept[name] = [hit for hit, ok in zip(hits, keep.tolist(), strict=True) if ok]
        removed[name] = len(hits) - len(kept[name])
    return kept, removed


def search_text(index: ClipIndex, encoder: ClipEncoder, text: str, cfg: RetrievalConfig) -> ClassRetrieval:
    """A free-text query: one prompt, the text itself, under the "class" of the same name."""
    if not text.strip():
        raise QueryError("the text query is empty")
    return retrieve_classes(index, encoder, [text.strip()], ["{}"], cfg)


def search_image(
    index: ClipIndex, encoder: ClipEncoder, image: Image.Image, name: str, cfg: RetrievalConfig
) -> ClassRetrieval:
    """An image query against the mode's index: I2I (``t2i`` mode) or I2T (``t2t`` mode)."""
    index.check_query_dim(encoder.dim, f"model {encoder.model_id}")
    vector = encoder.embed_pil_images([image])
    prompt = PromptQuery(class_name=name, template="<image>", text=f"<image:{name}>")
    return retrieve_with_vectors(index, [prompt], vector, cfg)


def more_like_this(
    index: ClipIndex, row_id: int, cfg: RetrievalConfig, modality: str = "image"
) -> ClassRetrieval:
    """Neighbours of a pool row by its own stored embedding (the row itself comes first, similarity 1)."""
    vector = index.vectors(np.array([row_id]), modality)
    prompt = PromptQuery(class_name=f"like #{row_id}", template="<row>", text=f"<row:{row_id}>")
    return retrieve_with_vectors(
        index, [prompt], vector, replace(cfg, mode="t2i" if modality == "image" else "t2t")
    )


def subset_table(index: ClipIndex, retrieval: ClassRetrieval) -> pa.Table:
    """img2dataset-ready rows: the pool's metadata columns, then id, class, rank, query, similarity, hits (JSON)."""
    ids, extra = [], {"id": [], "class": [], "rank": [], "query": [], "similarity": [], "hits": []}
    for name, hits in retrieval.per_class.items():
        for rank, hit in enumerate(hits):
            ids.append(hit.id)
            extra["id"].append(hit.id)
            extra["class"].append(name)
            extra["rank"].append(rank)
            extra["query"].append(hit.query)
            extra["similarity"].append(hit.similarity)
            extra["hits"].append(json.dumps([{"query": q, "similarity": round(s, 6)} for q, s in hit.hits]))
    table = index.metadata.take(pa.array(ids, pa.int64()))
    types = {"id": pa.int64(), "class": pa.string(), "rank": pa.int32(), "query": pa.string(),
             "similarity": pa.float32(), "hits": pa.string()}  # fmt: skip
    for column, values in extra.items():
        if column in table.column_names:
            table = table.drop_columns([column])
        table = table.append_column(column, pa.array(values, types[column]))
    return table
