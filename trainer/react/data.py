"""Training pairs for REACT customization: the retrieved subset, decoded and augmented.

Sources (``--subset``, repeatable):

* a parquet subset: the explorer's export or ``python -m react_explorer.retrieve``'s output (``caption`` +
  ``image_path``; a URL-only parquet must be downloaded with img2dataset first), or any parquet of pairs;
* an img2dataset output folder: ``--output_format webdataset`` (``*.tar`` holding ``KEY.jpg|png|webp`` +
  ``KEY.txt``) or ``--output_format files`` (images with a same-stem ``.txt`` caption at any depth).

Missing image files are an error that counts and names them, or, with ``skip_missing``, are dropped and counted.
Augmentation uses timm's ``create_transform`` (REACT's recipe); with it off, the model's evaluation transform.

A subset that fits a memory budget is decoded once before training (``PairDataset.preload``): a run sees each
pair once per epoch (the ``synthworld`` preset: 10 epochs), and decoding + transforming a batch of 64 PNGs per
update took ~0.15 s of a ~0.7 s update of the tiny CLIP on two cores (profiled; docs/react_customization.md).
"""

from __future__ import annotations

import io
import os
import random
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from react_explorer.embedding.pool_readers import IMAGE_SUFFIXES, read_image_folder, read_parquet_pool
from react_explorer.errors import PoolFormatError
from trainer.react.config import AugmentConfig

TarMember = tuple[str, str]  # (tar file, member name)


class SubsetError(ValueError):
    """A training subset is missing, malformed or points at missing images; the message names it."""


@dataclass(frozen=True)
class Pair:
    key: str
    caption: str
    image: str | TarMember  # a file path, or a member of a webdataset tar


@dataclass(frozen=True)
class SubsetReport:
    sources: tuple[str, ...]
    pairs: int
    skipped_missing_images: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "pairs": self.pairs,
            "skipped_missing_images": self.skipped_missing_images,
        }


def read_subset(
    sources: Sequence[str | os.PathLike[str]], *, skip_missing: bool = False
) -> tuple[list[Pair], SubsetReport]:
    """Every pair of every source, in order; missing images raise (or are dropped and counted)."""
    if not sources:
        raise SubsetError("no subset given: pass --subset PATH (a parquet or an img2dataset folder)")
    pairs: list[Pair] = []
    for source in sources:
        pairs.extend(_read_source(Path(source)))
    present = [_image_exists(pair.image) for pair in pairs]
    missing = [pair for pair, ok in zip(pairs, present, strict=True) if not ok]
    if missing and not skip_missing:
        examples = ", ".join(f"key {p.key!r}: {p.image}" for p in missing[:3])
        raise SubsetError(
            f"{len(missing)} of {len(pairs)} subset images are missing (first: {examples}); download them "
            "(img2dataset) or pass --skip-missing-images to train without them"
        )
    kept = [pair for pair, ok in zip(pairs, present, strict=True) if ok]
    if len(kept) < 2:
        raise SubsetError(f"the subset has {len(kept)} usable pairs; contrastive training needs at least 2")
    return kept, SubsetReport(tuple(str(s) for s in sources), len(kept), len(missing))


def _read_source(source: Path) -> list[Pair]:
    if source.is_file():
        if source.suffix != ".parquet":
            raise SubsetError(f"subset file {source} is not a .parquet file")
        try:
            table = read_parquet_pool(source).table
        except PoolFormatError as exc:
            raise SubsetError(str(exc)) from exc
        if "image_path" not in table.column_names:
            raise SubsetError(
                f"subset {source} has no image_path column (URLs only): download the images with img2dataset "
                "(--input_format parquet --url_col url --caption_col caption) and pass its output folder"
            )
        columns = table.select(["key", "caption", "image_path"]).to_pydict()
        return [
            Pair(k, c, p)
            for k, c, p in zip(columns["key"], columns["caption"], columns["image_path"], strict=True)
        ]
    if not source.is_dir():
        raise SubsetError(f"subset {source} not found")
    tars = sorted(source.glob("*.tar"))
    if tars:
        return [pair for tar in tars for pair in _read_tar(tar)]
    try:
        table = read_image_folder(source).table
    except PoolFormatError as exc:
        raise SubsetError(str(exc)) from exc
    columns = table.to_pydict()
    return [
        Pair(k, c, p)
        for k, c, p in zip(columns["key"], columns["caption"], columns["image_path"], strict=True)
    ]


def _read_tar(tar_path: Path) -> list[Pair]:
    """Pairs of one webdataset shard: members grouped by key (the name up to the first dot)."""
    images: dict[str, str] = {}
    captions: dict[str, str] = {}
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if f".{ext.lower()}" in IMAGE_SUFFIXES:
                    images[key] = member.name
                elif ext == "txt":
                    data = tar.extractfile(member)
                    captions[key] = data.read().decode("utf-8").strip() if data else ""
    except (tarfile.TarError, OSError) as exc:
        raise SubsetError(f"cannot read webdataset shard {tar_path}: {exc}") from exc
    if not captions:
        raise SubsetError(f"webdataset shard {tar_path} holds no .txt captions")
    # A caption without its image is a missing image (img2dataset failures), counted by read_subset.
    return [
        Pair(key, captions[key], (str(tar_path), images.get(key, f"{key}.<missing>")))
        for key in sorted(captions)
    ]


def _image_exists(image: str | TarMember) -> bool:
    if isinstance(image, tuple):
        return not image[1].endswith(".<missing>")
    return Path(image).is_file()


def build_train_transform(
    cfg: AugmentConfig, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Callable:
    """timm's training transform with REACT's settings (random resized crop, flip, jitter, RandAugment, erasing)."""
    from timm.data import create_transform  # heavy; only when a training transform is built

    return create_transform(
        input_size=image_size,
        is_training=True,
        scale=cfg.scale,
        ratio=cfg.ratio,
        hflip=cfg.hflip,
        color_jitter=cfg.color_jitter,
        auto_augment=cfg.auto_augment,
        interpolation=cfg.interpolation,
        mean=tuple(mean),
        std=tuple(std),
        re_prob=cfg.re_prob,
    )


@dataclass(frozen=True)
class PreloadReport:
    """What ``PairDataset.preload`` kept: ``kind`` is ``transformed`` (final tensors, for a deterministic
    transform), ``decoded`` (RGB images, transformed per access) or ``skipped`` (over budget, or budget 0)."""

    kind: str
    images: int
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "images": self.images,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
        }


class PairDataset(Dataset):
    """``(image [3, H, W], token ids [L])`` per pair; images decoded lazily (in DataLoader workers), or once up
    front by ``preload``."""

    def __init__(self, pairs: Sequence[Pair], token_ids: torch.Tensor, transform: Callable) -> None:
        if token_ids.ndim != 2 or token_ids.shape[0] != len(pairs):
            raise ValueError(f"token_ids must be [{len(pairs)}, L], got {tuple(token_ids.shape)}")
        self.pairs, self.token_ids, self.transform = list(pairs), token_ids, transform
        self._tars: dict[str, tarfile.TarFile] = {}  # per process: workers get their own copy
        self._tensors: torch.Tensor | None = None  # [N, 3, H, W] after a "transformed" preload
        self._decoded: list[Image.Image] | None = None  # after a "decoded" preload

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tensors is not None:
            return self._tensors[index], self.token_ids[index]
        image = self._decoded[index] if self._decoded is not None else self._open(self.pairs[index])
        return self.transform(image), self.token_ids[index]

    def preload(self, max_bytes: int, *, deterministic: bool) -> PreloadReport:
        """Decode every image once and keep it in memory when the subset fits ``max_bytes``.

        ``deterministic``: the transform gives the same tensor for the same image on every call (augmentation
        off), so its output is kept, one [N, 3, H, W] tensor; otherwise the decoded RGB images are kept and
        the (random) transform still runs per access. The size is estimated from the first image; a
        "decoded" preload whose images turn out larger than the budget is dropped (``skipped``).
        """
        start = time.perf_counter()
        first = self._open(self.pairs[0])
        try:
            if deterministic:
                sample = self.transform(first)
                if not isinstance(sample, torch.Tensor):
                    raise TypeError(f"a deterministic preload needs a tensor transform, got {type(sample)}")
                size = sample.numel() * sample.element_size() * len(self)
                if size > max_bytes:
                    return PreloadReport("skipped", 0, size, time.perf_counter() - start)
                tensors = torch.empty((len(self), *sample.shape), dtype=sample.dtype)
                tensors[0] = sample
                for index in range(1, len(self)):
                    tensors[index] = self.transform(self._open(self.pairs[index]))
                self._tensors = tensors
                return PreloadReport("transformed", len(self), size, time.perf_counter() - start)
            size = _rgb_bytes(first)
            if size * len(self) > max_bytes:
                return PreloadReport("skipped", 0, size * len(self), time.perf_counter() - start)
            decoded = [first]
            for pair in self.pairs[1:]:
                decoded.append(self._open(pair))
                size += _rgb_bytes(decoded[-1])
                if size > max_bytes:
                    return PreloadReport("skipped", 0, size, time.perf_counter() - start)
            self._decoded = decoded
            return PreloadReport("decoded", len(self), size, time.perf_counter() - start)
        finally:
            # Forked DataLoader workers must not share the main process's tar handles (one file offset).
            for tar in self._tars.values():
                tar.close()
            self._tars.clear()

    def _open(self, pair: Pair) -> Image.Image:
        try:
            if isinstance(pair.image, tuple):
                tar_path, member = pair.image
                tar = self._tars.get(tar_path) or self._tars.setdefault(tar_path, tarfile.open(tar_path))
                data = tar.extractfile(member)
                if data is None:
                    raise OSError(f"{member} is not a file")
                with Image.open(io.BytesIO(data.read())) as image:
                    return image.convert("RGB")
            with Image.open(pair.image) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError, tarfile.TarError) as exc:
            raise SubsetError(f"subset pair {pair.key!r}: cannot decode image {pair.image}: {exc}") from exc


def _rgb_bytes(image: Image.Image) -> int:
    return image.width * image.height * 3


def collate_pairs(items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    images, texts = zip(*items, strict=True)
    return {"images": torch.stack(images), "texts": torch.stack(texts)}  # [B, 3, H, W], [B, L]


def shuffled_batches(count: int, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's micro-batches: a seeded permutation cut into full batches (the short tail is dropped, so
    every process's micro-batch has the same size, which the gathered loss needs).

    Consecutive micro-batches are consecutive slices of one permutation, so W processes with batch b see
    exactly the batches of one process with batch W x b.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = list(range(count))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[start : start + batch_size] for start in range(0, count - batch_size + 1, batch_size)]
