"""Embed one rank's slice of a pool into one clip-retrieval shard (``img_emb_{rank}.npy``, ``text_emb_...``).

With W processes (``accelerate launch``/``torchrun``), rank r embeds the contiguous rows
``rank_slice(N, r, W)`` and writes shard number r, so the shards concatenated in order are the pool in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from react_explorer.embedding.encoders import ClipEncoder, check_image_files
from react_explorer.embedding.pool_readers import PairPool
from react_explorer.index.progress import BuildProgress, ProgressCallback
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
    on_progress: ProgressCallback | None = None,
) -> int:
    """Embed this rank's rows and write shard ``rank`` under ``out_dir``; returns the number of rows.

    ``on_progress`` hears after every batch how many of this rank's rows each stage has embedded (images
    first, then captions: the order the shard writer consumes them)."""
    cfg = cfg or EmbedConfig()
    start, stop = rank_slice(len(pool), rank, world_size)
    part = pool.slice(start, stop)
    names = pool.row_names()[start:stop]
    vectors: dict[str, Any] = {}
    with_images = "image" in cfg.modalities
    if on_progress is not None:
        on_progress(BuildProgress("images" if with_images else "captions", 0, len(part), with_images))
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
    if on_progress is not None:
        stages = {"image": "images", "text": "captions"}
        vectors = {
            modality: _reporting(batches, stages[modality], len(part), with_images, on_progress)
            for modality, batches in vectors.items()
        }
    write_embedding_shard(Path(out_dir), rank, part.table, vectors, encoder.dim, dtype=np.dtype(cfg.dtype))
    return len(part)


def _reporting(
    batches: Iterable[np.ndarray], stage: str, total: int, with_images: bool, on_progress: ProgressCallback
) -> Iterator[np.ndarray]:
    """The batches unchanged, reporting the rows embedded so far after each one."""
    done = 0
    for batch in batches:
        yield batch
        done = min(done + len(batch), total)
        on_progress(BuildProgress(stage, done, total, with_images))
