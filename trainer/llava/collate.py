"""Padding collator: a list of ``LlavaDataset`` items -> one ``LlavaNextForConditionalGeneration`` batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainer.llava.encode import IGNORE_INDEX


@dataclass(frozen=True)
class LlavaCollator:
    """Right-pads text (``pad_token_id``, attention 0, label -100) and stacks every image of the batch.

    Images are flattened across samples in order, which is how the model pairs them with its ``<image>``
    placeholders; each image's crops are zero-padded to the batch's largest crop count (``image_sizes`` tells
    the model how many are real, as ``LlavaNextImageProcessor(do_pad=True)`` output does). A batch with no
    image carries no ``pixel_values`` key. A frozen dataclass, so DataLoader workers can pickle it.
    """

    pad_token_id: int

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("LlavaCollator: empty batch")
        longest = max(item["input_ids"].numel() for item in items)
        input_ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)  # [B, T]
        labels = torch.full((len(items), longest), IGNORE_INDEX, dtype=torch.long)  # [B, T]
        attention_mask = torch.zeros((len(items), longest), dtype=torch.long)  # [B, T]
        for row, item in enumerate(items):
            length = item["input_ids"].numel()
            input_ids[row, :length] = item["input_ids"]
            labels[row, :length] = item["labels"]
            attention_mask[row, :length] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        images = [pixels for item in items for pixels in item["pixel_values"]]
        if images:
            most = max(image.shape[0] for image in images)
            pixel_values = images[0].new_zeros(
                (len(images), most, *images[0].shape[1:])
            )  # [N, crops, 3, t, t]
            for index, image in enumerate(images):
                pixel_values[index, : image.shape[0]] = image
            batch["pixel_values"] = pixel_values
            batch["image_sizes"] = torch.tensor(
                [list(size) for item in items for size in item["image_sizes"]], dtype=torch.long
            )  # [N, 2] (height, width)
        return batch
