"""Embed one rank's slice of a pool into one clip-retrieval shard (``img_emb_{rank}.npy``, ``text_emb_...``).

With W processes (``accelerate launch``/``torchrun``), rank r embeds the contiguous rows
``rank_slice(N, r, W)`` and writes shard number r, so the shards concatenated in order are the pool in order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from react_explorer.embedding.encoders import ClipEncoder, check_image_files
from react_explorer.embedding.pool_readers import PairPool
from react_explorer.index.shards import write_embedding_shard

EMBED_MODALITIES = ("image", "text")


@dataclass(frozen=True)
class EmbedConfig:
    """Embedding batch sizes and decode parallelism; ``tiny()`` for tests (inline decoding, no bars)."""

    batch_size: int = 256
    num_workers: int = 2  # DataLoader processes decoding images (the CPU bottleneck)
    modalities: tuple[str, ...] = EMBED_MODALITIES
    dtype: str = "float16"  # as clip-retrieval writes; rows are re-normalised as float32 when read
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"EmbedConfig.batch_size must be positive, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"EmbedConfig.num_workers must be >= 0, got {self.num_workers}")
        if not self.modalities or any(m not in EMBED_MODALITIES for m in self.modalities):
            raise ValueError(f"EmbedConfig.modalities must be a non-empty subset of {EMBED_MODALITIES}")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"EmbedConfig.modalities repeats a modality: {self.modalities}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"EmbedConfig.dtype must be float16 or float32, got {self.dtype!r}")

    @classmethod
    def tiny(cls, **overrides: Any) -> EmbedConfig:
        return cls(**{"batch_size": 8, "num_workers": 0, "progress": False, **overrides})


def rank_slice(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous, balanced [start, stop) of ``count`` rows for ``rank`` (sizes differ by at most one)."""
    if world_size <= 0 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    base, extra = divmod(count, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def embed_pool_shard(
    pool: PairPool,
    encoder: ClipEncoder,
    out_dir: str | os.PathLike[str],
    *,
    rank: int = 0,
    world_size: int = 1,
    cfg: EmbedConfig | None = None,
) -> int:
    """Embed this rank's rows and write shard ``rank`` under ``out_dir``; returns the number of rows."""
    cfg = cfg or EmbedConfig()
    start, stop = rank_slice(len(pool), rank, world_size)
    part = pool.slice(start, stop)
    names = pool.row_names()[start:stop]
    vectors: dict[str, Any] = {}
    if "image" in cfg.modalities:
        files = part.image_files()
        check_image_files(files, names)  # every missing file is reported before any work
        vectors["image"] = encoder.iter_image_file_embeddings(
            files,
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            progress=cfg.progress,
            row_names=names,
        )
    if "text" in cfg.modalities:
        vectors["text"] = encoder.iter_text_embeddings(
            part.captions(), batch_size=cfg.batch_size, progress=cfg.progress
        )
    write_embedding_shard(Path(out_dir), rank, part.table, vectors, encoder.dim, dtype=np.dtype(cfg.dtype))
    return len(part)
