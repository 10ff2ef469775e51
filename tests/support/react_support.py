"""Shared builders for the REACT explorer tests: a random-weight tiny CLIP on disk, toy pools, unit vectors.

The tiny CLIP has random weights, so tests assert what holds for any weights: identical texts (or images) give
identical unit vectors (similarity 1), and dimensions, counts and orders are exact. The builders' own tests are
in tests/support/test_react_support.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from trainer.foundation.tokenizer import save_tokenizer, train_tokenizer
from vision_common.tiny_clip import TinyClipConfig, create_tiny_clip, save_open_clip_dir

logging.getLogger().setLevel(logging.ERROR)  # open_clip warns "initialized randomly" on every create

TOY_COLORS = {"red": (220, 40, 40), "green": (45, 165, 60), "blue": (40, 80, 220), "yellow": (240, 215, 40)}
TOY_SHAPES = ("square", "circle")


def save_random_tiny_clip(root: Path) -> Path:
    """A random-weight tiny CLIP (TinyClipConfig.tiny(): 32-d embeddings) saved in open_clip's local-dir layout."""
    texts = [f"{c} {s} photo icon" for c in (*TOY_COLORS, "pink", "gray") for s in (*TOY_SHAPES, "star")] * 5
    tokenizer_dir = save_tokenizer(train_tokenizer(texts, vocab_size=300), root / "tokenizer")
    model, _, _, _ = create_tiny_clip(TinyClipConfig.tiny(), tokenizer_dir, seed=0)
    return save_open_clip_dir(model, TinyClipConfig.tiny(), root / "clip", tokenizer_dir=tokenizer_dir)


def toy_caption(index: int) -> str:
    color = list(TOY_COLORS)[index % len(TOY_COLORS)]
    return f"{color} {TOY_SHAPES[(index // len(TOY_COLORS)) % len(TOY_SHAPES)]}"


def toy_image(index: int, size: int = 24) -> Image.Image:
    """A coloured block at a position unique to ``index`` (below (size/2)^2): images differ, captions repeat."""
    rgb = TOY_COLORS[list(TOY_COLORS)[index % len(TOY_COLORS)]]
    pixels = np.full((size, size, 3), 235, dtype=np.uint8)
    half = size // 2
    x, y = index % half, (index // half) % half
    pixels[y : y + size // 2, x : x + size // 2] = rgb
    return Image.fromarray(pixels)


def write_toy_pool(root: Path, count: int = 24) -> Path:
    """``root/pool.parquet`` with ``count`` pairs (relative image paths under ``root/images``), as SynthWorld's."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        toy_image(i).save(root / "images" / f"{i:04d}.png")
        rows.append(
            {
                "key": f"{i:09d}",
                "image_path": f"images/{i:04d}.png",
                "caption": toy_caption(i),
                "url": f"synthworld://pool/{i:09d}.png",
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), root / "pool.parquet")
    return root / "pool.parquet"


def unit_vectors(count: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
