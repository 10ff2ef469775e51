"""Answer loss with the right image, a blank one and another record's image: the image-use measurement shared by
the evaluation (``trainer.llava.eval.image_use``) and the probe CLI (``python -m trainer.probes.image_use``).

A model that grounds its answers loses more when the image is wrong; a gap near zero means the answers come from
the text prior. Blank images have every pixel at the normalisation mean (zeros); another record's images are
resized to the record's own size, so every prompt keeps its AnyRes token count.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from tqdm import tqdm

from trainer.llava.assemble import anyres_of, pixel_config_of
from trainer.llava.collate import LlavaCollator
from trainer.llava.data import DataError, LlavaDataset, prepare_samples
from trainer.llava.encode import IGNORE_INDEX
from vision_common.anyres.image import rgb_for_model
from vision_common.anyres.pixels import preprocess
from vision_common.chat.conversation import DEFAULT_IMAGE_TOKEN

CONDITIONS = ("right", "blank", "other")


@dataclass(frozen=True)
class ImageUseReport:
    records: int
    supervised_tokens: int
    loss_right: float
    loss_blank: float
    loss_other: float

    @property
    def gap_blank(self) -> float:
        return self.loss_blank - self.loss_right

    @property
    def gap_other(self) -> float:
        return self.loss_other - self.loss_right

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "gap_blank": self.gap_blank, "gap_other": self.gap_other}


def donor_index(images: Sequence[tuple[Path, ...]], index: int) -> int:
    """The next record (cyclically) whose images differ from record ``index``'s: consecutive records often
    ask about the same scene (the eval sets list several questions per image), and a same-scene "other"
    image would measure nothing."""
    for step in range(1, len(images)):
        candidate = (index + step) % len(images)
        if images[candidate] != images[index]:
            return candidate
    raise ValueError('the "other" condition needs records with at least two different images')


def swapped_items(dataset: LlavaDataset, condition: str) -> list[dict[str, Any]]:
    """Every dataset item with its images replaced as ``condition`` says (``right`` keeps them)."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    items = [dataset[index] for index in range(len(dataset))]
    if condition == "right":
        return items
    if condition == "blank":
        return [
            {**item, "pixel_values": [torch.zeros_like(p) for p in item["pixel_values"]]} for item in items
        ]
    donors = [sample.image_paths for sample in dataset.samples]
    swapped = []
    for index, (item, sample) in enumerate(zip(items, dataset.samples)):
        donor_paths = donors[donor_index(donors, index)]
        pixels = []
        for position, size in enumerate(sample.image_sizes_wh):
            with PIL.Image.open(donor_paths[position % len(donor_paths)]) as image:
                donor = rgb_for_model(image).resize(size, PIL.Image.BICUBIC)
            pixels.append(preprocess(donor, dataset.anyres, dataset.pixels).pixel_values)
        swapped.append({**item, "pixel_values": pixels})
    return swapped


@torch.no_grad()
def mean_answer_loss(
    model: torch.nn.Module,
    items: Sequence[dict[str, Any]],
    collate: Callable[[list[Any]], dict],
    batch_size: int,
) -> tuple[float, int]:
    """Token-weighted mean cross-entropy over the supervised tokens of ``items``, and their count (batches go
    to the model's device, pixels to its dtype)."""
    parameter = next(model.parameters())
    total, tokens = 0.0, 0
    for start in range(0, len(items), batch_size):
        batch = {
            name: value.to(parameter.device, parameter.dtype if name == "pixel_values" else None)
            if isinstance(value, torch.Tensor)
            else value
            for name, value in collate(list(items[start : start + batch_size])).items()
        }
        count = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the model shifts labels by one
        total += float(model(**batch).loss) * count
        tokens += count
    return total / max(tokens, 1), tokens


def image_use_of_records(
    model: torch.nn.Module,
    processor: Any,
    records: Sequence[dict[str, Any]],
    images: Path,
    *,
    template: str,
    batch_size: int = 8,
    max_length: int = 2048,
    source: str = "records",
    progress: bool = True,
) -> ImageUseReport:
    """Answer loss of a loaded LlavaNext ``model`` on validated LLaVA ``records`` (images relative to
    ``images``, rendered with the builtin ``template``) with the right, a blank and another record's image."""
    tokenizer = processor.tokenizer
    samples, _ = prepare_samples(
        records,
        images,
        tokenizer,
        template=template,
        anyres=anyres_of(model),
        image_token_id=tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN),
        max_length=max_length,
        source=source,
    )
    if not samples:
        raise DataError(f"{source}: every record is longer than max_length={max_length}")
    dataset = LlavaDataset(samples, anyres_of(model), pixel_config_of(processor))
    collate = LlavaCollator(tokenizer.pad_token_id)
    losses = {}
    bar = tqdm(CONDITIONS, desc="image use", unit="condition", file=sys.stderr, disable=not progress)
    for condition in bar:
        losses[condition], tokens = mean_answer_loss(
            model, swapped_items(dataset, condition), collate, batch_size
        )
    return ImageUseReport(len(dataset), tokens, losses["right"], losses["blank"], losses["other"])
