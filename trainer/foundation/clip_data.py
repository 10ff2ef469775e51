"""Image-caption pairs from a SynthWorld web pool (``pool/pool.parquet``) for contrastive CLIP training.

Captions are tokenized once up front (cheap, and it keeps tokenizers out of the DataLoader workers); images are
decoded and augmented in the workers, in parallel. Augmentation is deliberately light and geometry-preserving:
captions name colours and 3x3-grid positions ("top left", "left of"), so colour jitter and horizontal flips
would teach the model wrong text.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms

POOL_RELATIVE_PATH = Path("pool") / "pool.parquet"
POOL_REQUIRED_COLUMNS = ("key", "image_path", "caption")


class PoolDataError(ValueError):
    """The pool parquet is missing or malformed; the message names the file and the record."""


class ImageLoadError(ValueError):
    """An image file is missing or cannot be decoded; the message names the record and the path."""


@dataclass(frozen=True)
class PoolPair:
    key: str
    image_path: Path
    caption: str


def read_pool(pool_parquet: str | os.PathLike[str]) -> list[PoolPair]:
    """Read ``key, image_path, caption`` rows; image paths are resolved against the parquet's folder."""
    import pyarrow.parquet as pq

    path = Path(pool_parquet)
    if not path.is_file():
        raise PoolDataError(f"pool file {path} not found")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise PoolDataError(f"cannot read pool parquet {path}: {exc}") from exc
    missing = [c for c in POOL_REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise PoolDataError(f"{path}: missing column(s) {missing}; has {table.column_names}")
    columns = {c: table.column(c).to_pylist() for c in POOL_REQUIRED_COLUMNS}
    pairs = []
    for row, (key, image_path, caption) in enumerate(zip(*(columns[c] for c in POOL_REQUIRED_COLUMNS))):
        if not isinstance(caption, str) or not caption.strip():
            raise PoolDataError(f"{path}: row {row} (key {key!r}) has an empty caption")
        if not isinstance(image_path, str) or not image_path:
            raise PoolDataError(f"{path}: row {row} (key {key!r}) has no image_path")
        pairs.append(PoolPair(key=str(key), image_path=path.parent / image_path, caption=caption))
    if not pairs:
        raise PoolDataError(f"{path}: the pool is empty")
    return pairs


def split_pairs(
    pairs: Sequence[PoolPair], val_count: int, seed: int
) -> tuple[list[PoolPair], list[PoolPair]]:
    """Seeded hold-out of ``val_count`` pairs for the retrieval metric; the rest is for training."""
    if not 0 <= val_count < len(pairs):
        raise ValueError(f"val_count must be in [0, {len(pairs)}), got {val_count}")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    val = sorted(order[:val_count])
    train = sorted(order[val_count:])
    return [pairs[i] for i in train], [pairs[i] for i in val]


class RandomSideCrop:
    """Crop a random window keeping at least ``min_fraction`` of each side (so objects stay mostly inside)."""

    def __init__(self, min_fraction: float) -> None:
        if not 0 < min_fraction <= 1:
            raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
        self.min_fraction = min_fraction

    def __call__(self, image: Image.Image) -> Image.Image:
        # torch's RNG, not random's: DataLoader seeds it per worker and torch.manual_seed seeds it in-process.
        width, height = image.size
        low = self.min_fraction
        w = round(width * (low + (1 - low) * torch.rand(()).item()))
        h = round(height * (low + (1 - low) * torch.rand(()).item()))
        left = int(torch.randint(0, width - w + 1, ()).item())
        top = int(torch.randint(0, height - h + 1, ()).item())
        return image.crop((left, top, left + w, top + h))


def train_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    resize_mode: str = "squash",
    min_scale: float = 0.8,
) -> Callable[[Image.Image], torch.Tensor]:
    """Light augmentation matching the eval resize: a random crop of at least ``min_scale`` of the area, then
    either a squash to ``image_size`` square (``resize_mode="squash"``) or a near-square crop (``"shortest"``)."""
    bicubic = transforms.InterpolationMode.BICUBIC
    if resize_mode == "squash":
        geometry = [
            RandomSideCrop(min_scale**0.5),
            transforms.Resize((image_size, image_size), interpolation=bicubic),
        ]
    elif resize_mode == "shortest":
        geometry = [
            transforms.RandomResizedCrop(
                image_size, scale=(min_scale, 1.0), ratio=(0.9, 1.1), interpolation=bicubic
            )
        ]
    else:
        raise ValueError(f"resize_mode must be squash or shortest, got {resize_mode!r}")
    return transforms.Compose([*geometry, transforms.ToTensor(), transforms.Normalize(mean, std)])


def load_rgb(path: Path, where: str) -> Image.Image:
    """Open an image as RGB; a missing or undecodable file raises naming ``where`` and the path."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{where}: image {path} not found") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageLoadError(f"{where}: cannot decode image {path}: {exc}") from exc


class PoolPairsDataset(Dataset):
    """``(image [3,H,W], token ids [L], index)`` per pair; images decoded lazily (in DataLoader workers).

    The index lets the training loop look up per-pair tensors (caption-word targets) in the main process."""

    def __init__(
        self,
        pairs: Sequence[PoolPair],
        token_ids: torch.Tensor,  # [N, L] int64, already tokenized captions
        transform: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        if token_ids.ndim != 2 or token_ids.shape[0] != len(pairs):
            raise ValueError(f"token_ids must be [{len(pairs)}, L], got {tuple(token_ids.shape)}")
        self.pairs = list(pairs)
        self.token_ids = token_ids
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        pair = self.pairs[index]
        image = load_rgb(pair.image_path, f"pool record {pair.key!r}")
        return self.transform(image), self.token_ids[index], index


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy/random must follow it for reproducible crops.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = True,
    batch_sampler: Sampler[list[int]] | None = None,
) -> DataLoader:
    """A seeded DataLoader; workers (if any) persist across epochs so they are forked only once.

    With ``batch_sampler`` the batches come from it (``batch_size``/``shuffle``/``drop_last`` are then unused).
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _seed_worker}
    if batch_sampler is not None:
        return DataLoader(
            dataset, batch_sampler=batch_sampler, num_workers=num_workers, generator=generator, **extra
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator,
        **extra,
    )
