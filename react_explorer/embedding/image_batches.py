"""Parallel image decoding for embedding: a ``Dataset`` over image files and the ``DataLoader`` around it.

Decoding PNG/JPEG is the bottleneck of image embedding on CPU, so files are opened and preprocessed in DataLoader
workers. A file that is missing or cannot be decoded does not raise inside the worker (the DataLoader would
re-raise it wrapped in a worker traceback); the worker returns a zero image plus the error text, and the caller
raises one clear error naming the row and the path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class ImageBatch:
    """One batch of preprocessed images; ``errors[i]`` is "" for good images, else what went wrong."""

    start: int  # position of the first image in the whole sequence
    pixels: torch.Tensor  # [B, 3, H, W]
    errors: tuple[str, ...]


class ImageFileDataset(Dataset):
    """``(pixels [3,H,W], error text)`` per file, decoded as RGB and preprocessed with the model's transform."""

    def __init__(self, paths: Sequence[Path], preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess
        self._blank: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _blank_pixels(self) -> torch.Tensor:
        if self._blank is None:
            self._blank = torch.zeros_like(self.preprocess(Image.new("RGB", (8, 8))))
        return self._blank

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return self.preprocess(image.convert("RGB")), ""
        except FileNotFoundError:
            return self._blank_pixels(), f"image {path} not found"
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            return self._blank_pixels(), f"cannot decode image {path}: {exc}"


def _collate(items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, tuple[str, ...]]:
    return torch.stack([pixels for pixels, _ in items]), tuple(error for _, error in items)


def iter_image_batches(
    paths: Sequence[Path],
    preprocess: Callable[[Image.Image], torch.Tensor],
    *,
    batch_size: int,
    num_workers: int,
) -> Iterator[ImageBatch]:
    """Batches in file order (the DataLoader keeps order), decoded by ``num_workers`` processes (0 = inline)."""
    loader = DataLoader(
        ImageFileDataset(paths, preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        # Workers only decode; one torch thread each keeps them from fighting the encoder for the cores.
        worker_init_fn=_single_thread_worker if num_workers else None,
        persistent_workers=False,
    )
    start = 0
    for pixels, errors in loader:
        yield ImageBatch(start=start, pixels=pixels, errors=errors)
        start += len(errors)


def _single_thread_worker(_worker_id: int) -> None:
    torch.set_num_threads(1)
