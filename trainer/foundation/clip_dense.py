"""Dense supervision for the tiny CLIP's patch tokens from the world's TRAIN-scene annotations (issue #18).

A real LLaVA starts from a tower pretrained on billions of pairs whose patches already say what is where; the
tiny tower's caption-word heads give its layer -2 patches shape evidence only weakly (linear probe 0.44 at an
object's centre). This stand-in labels every patch of train-scene tiles, at the scales the LLaVA sees them (the
whole scene squashed to one tile, LLaVA-NeXT's base view, and the 2x2 AnyRes canvas cut into four tiles), with
what lies under it: the object's shape (or "sign", or background), its colour, and a sign's word. A linear head
per group on the layer -2 tokens is trained with cross-entropy. Groups can start later than shape (the
curriculum "shape first, then colour, then sign word"), because trained jointly colour wins: an earlier run
that labelled category and colour from the first step bought patch colour (0.70 -> 0.83) at the price of shape
(0.41 -> 0.32; docs/foundation_models.md). Held-out test scenes are never read here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from trainer.foundation.clip_aux import IGNORE
from trainer.foundation.clip_data import load_rgb
from trainer.synthworld.concepts import COLOR_NAMES, SHAPES, SIGN, SIGN_WORDS

BACKGROUND = "background"
DENSE_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": (*SHAPES, SIGN, BACKGROUND),
    "color": COLOR_NAMES,
    "sign_word": SIGN_WORDS,
}
# A patch is labelled with the object covering most of it when that object covers at least this share of the
# patch, background when no object covers more than ``_BACKGROUND_MAX``; in between it is ignored (an edge).
_OBJECT_MIN = 0.3
_BACKGROUND_MAX = 0.05
ANNOTATIONS = "scenes/annotations/instances_train.json"
IMAGES = "scenes/images/train"


class DenseDataError(ValueError):
    """Train-scene annotations are missing or malformed; the message names the file."""


@dataclass(frozen=True)
class DenseTiles:
    """Tower-sized tiles of train scenes and their patch labels."""

    pixels: torch.Tensor  # [N, 3, tile, tile] uint8
    labels: torch.Tensor  # [N, patches, len(DENSE_GROUPS)] long, IGNORE where a group says nothing

    def __len__(self) -> int:
        return self.pixels.shape[0]


def object_labels(attributes: dict) -> list[int]:
    """The object's class index in each of ``DENSE_GROUPS`` (IGNORE where the group does not apply)."""
    category = attributes.get("shape") or (SIGN if attributes.get("text") else None)
    shape_words, colour_words, sign_words = DENSE_GROUPS.values()
    return [
        shape_words.index(category) if category in shape_words else IGNORE,
        colour_words.index(attributes["color"]) if attributes.get("color") in colour_words else IGNORE,
        sign_words.index(attributes["text"]) if attributes.get("text") in sign_words else IGNORE,
    ]


def patch_labels(
    polygons: Sequence[Sequence[float]],
    labels: Sequence[Sequence[int]],
    scale: tuple[float, float],
    offset: tuple[float, float],
    tile: int,
    patch: int,
) -> np.ndarray:
    """[patches, groups] labels of one tile: each object's polygon (flat x, y list in image pixels) is mapped by
    ``(p - offset) * scale`` into the tile, rasterised, and every patch takes the label of the object covering
    the most of it (>= ``_OBJECT_MIN``), background (shape group only) if objects cover <= ``_BACKGROUND_MAX``
    of it, else IGNORE in every group."""
    raster = Image.new("L", (tile, tile), 0)
    draw = ImageDraw.Draw(raster)
    for index, flat in enumerate(polygons):
        points = [
            ((flat[i] - offset[0]) * scale[0], (flat[i + 1] - offset[1]) * scale[1])
            for i in range(0, len(flat) - 1, 2)
        ]
        if len(points) >= 3:
            draw.polygon(points, fill=index + 1)
    cells = tile // patch
    owner = np.asarray(raster, dtype=np.int64)[: cells * patch, : cells * patch]
    owner = owner.reshape(cells, patch, cells, patch).transpose(0, 2, 1, 3).reshape(cells * cells, -1)
    counts = np.stack([np.bincount(row, minlength=len(polygons) + 1) for row in owner]) / owner.shape[1]
    out = np.full((cells * cells, len(DENSE_GROUPS)), IGNORE, dtype=np.int64)
    objects = counts[:, 1:]
    best = objects.argmax(1) if len(polygons) else np.zeros(cells * cells, dtype=np.int64)
    cover = objects.max(1) if len(polygons) else np.zeros(cells * cells)
    background = DENSE_GROUPS["shape"].index(BACKGROUND)
    for cell in range(cells * cells):
        if cover[cell] >= _OBJECT_MIN:
            out[cell] = labels[best[cell]]
        elif cover[cell] <= _BACKGROUND_MAX:
            out[cell, 0] = background
    return out


def _views(
    width: int, height: int, tile: int, grid: int
) -> list[tuple[tuple[float, float], tuple[float, float], tuple[int, int]]]:
    """(scale, offset in image pixels, tile position on the squashed canvas) of each tile of a grid x grid
    canvas that squashes the whole image."""
    sx, sy = grid * tile / width, grid * tile / height
    return [
        ((sx, sy), (col * tile / sx, row * tile / sy), (col, row))
        for row in range(grid)
        for col in range(grid)
    ]


def load_dense_tiles(
    world: Path, max_scenes: int, tile: int, patch: int, grids: Sequence[int] = (1, 2)
) -> DenseTiles:
    """Tiles of the first ``max_scenes`` train scenes at each canvas grid (1: base view, 2: 2x2 AnyRes)."""
    path = world / ANNOTATIONS
    try:
        data = json.loads(path.read_text())
        images = sorted(data["images"], key=lambda image: image["id"])[:max_scenes]
        by_image: dict[int, list[dict]] = {image["id"]: [] for image in images}
        for ann in data["annotations"]:
            if ann["image_id"] in by_image:
                by_image[ann["image_id"]].append(ann)
        pixels, labels = [], []
        for image in images:
            anns = by_image[image["id"]]
            polygons = [ann["segmentation"][0] for ann in anns]
            object_rows = [object_labels(ann["attributes"]) for ann in anns]
            picture = load_rgb(world / IMAGES / image["file_name"], "dense supervision")
            for grid in grids:
                canvas = np.asarray(picture.resize((grid * tile, grid * tile), Image.BICUBIC))
                for scale, offset, (col, row) in _views(image["width"], image["height"], tile, grid):
                    pixels.append(canvas[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile])
                    labels.append(patch_labels(polygons, object_rows, scale, offset, tile, patch))
    except FileNotFoundError as exc:
        raise DenseDataError(f"{path}: not found (is --world a SynthWorld folder?)") from exc
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DenseDataError(f"{path}: malformed annotation ({exc!r})") from exc
    if not pixels:
        raise DenseDataError(f"{path}: no train scenes")
    return DenseTiles(
        torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(np.stack(labels)),
    )


def normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> the tower's normalised float input."""
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (pixels.float() / 255 - mean_t) / std_t


class DensePatchHeads(nn.Module):
    """One linear classifier per group of ``DENSE_GROUPS`` on every (normalised) patch token."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.sizes = [len(words) for words in DENSE_GROUPS.values()]
        # Same reason as PatchWordHeads: the patch tokens share a large common component.
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.linear = nn.Linear(width, sum(self.sizes))

    def loss(
        self, patch_tokens: torch.Tensor, labels: torch.Tensor, group_weights: Sequence[float]
    ) -> torch.Tensor:
        """Sum over groups of ``group_weights[g]`` x the mean cross-entropy over the patches the group labels.
        ``patch_tokens`` [B, P, W], ``labels`` [B, P, G]; a zero weight skips the group."""
        logits = self.linear(self.norm(patch_tokens)).split(self.sizes, dim=-1)
        losses = []
        for column, group_logits in enumerate(logits):
            target = labels[..., column].reshape(-1)
            if group_weights[column] and (target != IGNORE).any():
                ce = nn.functional.cross_entropy(
                    group_logits.reshape(-1, group_logits.shape[-1]), target, ignore_index=IGNORE
                )
                losses.append(group_weights[column] * ce)
        if not losses:
            return patch_tokens.new_zeros(())
        return torch.stack(losses).sum()


def dense_group_weights(groups: Sequence[str], warming_up: bool, warmup_group: str) -> list[float]:
    """Weight 1 for each of ``groups`` (names of ``DENSE_GROUPS``), only ``warmup_group`` during the warm-up."""
    unknown = set(groups) - set(DENSE_GROUPS)
    if unknown:
        raise ValueError(f"unknown dense group(s) {sorted(unknown)}; known: {list(DENSE_GROUPS)}")
    active = {warmup_group} & set(groups) if warming_up else set(groups)
    return [1.0 if name in active else 0.0 for name in DENSE_GROUPS]


class DenseSupervision:
    """Everything ``clip_train`` needs for the dense loss: the tiles, the heads and a seeded batch order."""

    def __init__(
        self,
        tiles: DenseTiles,
        width: int,
        groups: Sequence[str],
        batch: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int,
    ) -> None:
        dense_group_weights(groups, False, "")  # validates the names
        self.tiles, self.groups, self.batch, self.mean, self.std = tiles, tuple(groups), batch, mean, std
        self.heads = DensePatchHeads(width)
        self.generator = torch.Generator().manual_seed(seed)
        self._rows = torch.zeros(0, dtype=torch.long)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised pixels [batch, 3, tile, tile] and labels [batch, patches, groups]; epochs reshuffle."""
        if len(self._rows) < self.batch:
            self._rows = torch.cat([self._rows, torch.randperm(len(self.tiles), generator=self.generator)])
        rows, self._rows = self._rows[: self.batch], self._rows[self.batch :]
        return normalise(self.tiles.pixels[rows], self.mean, self.std), self.tiles.labels[rows]

    def loss(
        self, patch_tokens: torch.Tensor, labels: torch.Tensor, warming_up: bool, warmup_group: str
    ) -> torch.Tensor:
        return self.heads.loss(
            patch_tokens, labels, dense_group_weights(self.groups, warming_up, warmup_group)
        )


def add_dense_arguments(parser: argparse.ArgumentParser) -> None:
    """``clip_train``'s dense-supervision flags (all default to the config's values: off)."""
    parser.add_argument(
        "--dense-weight",
        type=float,
        default=None,
        help="weight of dense patch labels from train-scene annotations (default 0: off)",
    )
    parser.add_argument(
        "--dense-groups",
        default=None,
        help="comma-separated dense groups among shape,color,sign_word (default shape; shape alone in the "
        "warm-up)",
    )
    parser.add_argument("--dense-scenes", type=int, default=None, help="train scenes read for dense labels")
    parser.add_argument("--dense-batch", type=int, default=None, help="dense tiles per step (default 16)")


def dense_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ClipTrainConfig`` fields the dense flags set (None: keep the preset's value)."""
    groups = None if args.dense_groups is None else tuple(g.strip() for g in args.dense_groups.split(","))
    return {
        "dense_weight": args.dense_weight,
        "dense_groups": groups,
        "dense_scenes": args.dense_scenes,
        "dense_batch": args.dense_batch,
    }
