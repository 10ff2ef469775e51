"""LLaVA conversation JSON -> validated, tokenized, length-checked training samples and a torch Dataset.

Records are LLaVA's format (llava.md §5): ``{"id", "image": "rel.png" | ["a.png", "b.png"],
"conversations": [{"from": "human"|"gpt", "value": ...}, ...]}``; a record without ``image`` is text-only.
Single-image and text-only records are checked by ``trainer.data_engine.schema.validate_records``
(after moving a lone ``<image>`` tag to the front of the first human turn, as LLaVA's
``preprocess_multimodal`` does); multi-image records (LLaVA-NeXT's list form) get the same turn checks plus
a count of tags against images. Every image file is checked for existence and read for its size up front,
so a bad record fails at start-up with its id and field, not hours into training.

Each sample is rendered with the stage's template, tokenized with labels (``encode``), and its ``<image>``
tokens are expanded to the AnyRes count ``LlavaNextProcessor`` would insert. Samples longer than
``max_length`` are dropped and counted (never truncated: cutting through image placeholders would break the
feature/token match). Pixels are decoded lazily in ``__getitem__``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from trainer.data_engine.schema import GPT, IMAGE_TAG, RecordError, validate_records
from trainer.llava.encode import EncodedSample, EncodingError, encode_prompt
from vision_common.anyres.geometry import AnyResConfig, num_image_tokens
from vision_common.anyres.image import rgb_for_model
from vision_common.anyres.pixels import PixelConfig, preprocess
from vision_common.chat.conversation import ConversationError, from_llava_turns, split_image_markers
from vision_common.chat.templates import TemplateError, render


class DataError(ValueError):
    """Training data is unusable; the message names the file, the record id and the field."""


@dataclass(frozen=True)
class Sample:
    record_id: str
    image_paths: tuple[Path, ...]
    image_sizes_wh: tuple[tuple[int, int], ...]
    encoded: EncodedSample

    @property
    def length(self) -> int:
        return len(self.encoded.input_ids)


@dataclass(frozen=True)
class DataReport:
    """What loading kept and what it dropped (``dropped_over_length``: record ids longer than max_length)."""

    source: str
    records: int
    samples: int
    max_length: int
    dropped_over_length: tuple[str, ...] = field(default=())
    longest_kept: int = 0
    image_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "records": self.records,
            "samples": self.samples,
            "image_samples": self.image_samples,
            "max_length": self.max_length,
            "dropped_over_length": len(self.dropped_over_length),
            "dropped_ids_first": list(self.dropped_over_length[:20]),
            "longest_kept": self.longest_kept,
        }


def read_records(json_path: str | os.PathLike[str]) -> list[Any]:
    path = Path(json_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: data file does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read LLaVA JSON: {exc}") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _label(record: Any, index: int) -> str:
    if isinstance(record, dict) and isinstance(record.get("id"), str):
        return f"record {record['id']!r}"
    return f"record #{index}"


def _tag_to_front(record: dict[str, Any]) -> dict[str, Any]:
    """LLaVA ``preprocess_multimodal``: a single ``<image>`` anywhere in the first human turn moves to its front."""
    turns = record.get("conversations")
    if not isinstance(record.get("image"), str) or not isinstance(turns, list) or not turns:
        return record
    first = turns[0]
    value = first.get("value") if isinstance(first, dict) else None
    if not isinstance(value, str) or value.count(IMAGE_TAG) != 1 or value.startswith(f"{IMAGE_TAG}\n"):
        return record
    moved = copy.deepcopy(record)
    moved["conversations"][0]["value"] = f"{IMAGE_TAG}\n{value.replace(IMAGE_TAG, '').strip()}"
    return moved


def _structure_view(record: dict[str, Any], label: str) -> dict[str, Any]:
    """A multi-image record checked for its image list, then reduced to a text-only view for the turn rules."""
    images = record["image"]
    if not images or not all(isinstance(p, str) and p.strip() for p in images):
        raise DataError(f"{label}: field 'image' must be a path or a non-empty list of paths, got {images!r}")
    turns = record.get("conversations")
    if not isinstance(turns, list):
        return {k: v for k, v in record.items() if k != "image"}  # validate_records names the problem
    tags = 0
    view_turns = []
    for position, turn in enumerate(turns):
        value = turn.get("value") if isinstance(turn, dict) else None
        if isinstance(value, str) and IMAGE_TAG in value:
            if turn.get("from") == GPT:
                raise DataError(f"{label}: conversations[{position}].value has {IMAGE_TAG!r} in a gpt turn")
            tags += value.count(IMAGE_TAG)
            turn = {**turn, "value": split_image_markers(value)[0] or "(image)"}
        view_turns.append(turn)
    if tags != len(images):
        raise DataError(
            f"{label}: field 'image' lists {len(images)} image(s) but the human turns hold {tags} {IMAGE_TAG} tag(s)"
        )
    return {**{k: v for k, v in record.items() if k != "image"}, "conversations": view_turns}


def validate_all(records: Sequence[Any], source: str) -> list[dict[str, Any]]:
    """Validate every record (errors name ``source``, the record id and the field); return them normalised."""
    normalised = [_tag_to_front(r) if isinstance(r, dict) else r for r in records]
    views = []
    for index, record in enumerate(normalised):
        if isinstance(record, dict) and isinstance(record.get("image"), list):
            views.append(_structure_view(record, f"{source}: {_label(record, index)}"))
        else:
            views.append(record)
    try:
        validate_records(views)
    except RecordError as exc:
        raise DataError(f"{source}: {exc}") from None
    return normalised


def image_paths_of(record: dict[str, Any], images_dir: Path) -> tuple[Path, ...]:
    image = record.get("image")
    if image is None:
        return ()
    return tuple(images_dir / rel for rel in ([image] if isinstance(image, str) else image))


def read_image_size(path: Path, where: str) -> tuple[int, int]:
    """(width, height) from the file header; the error names the record and the path."""
    if not path.is_file():
        raise DataError(f"{where}: field 'image': file {path} does not exist")
    try:
        with PIL.Image.open(path) as image:
            return image.size
    except (OSError, PIL.UnidentifiedImageError) as exc:
        raise DataError(f"{where}: field 'image': cannot read {path}: {exc}") from exc


def prepare_samples(
    records: Sequence[dict[str, Any]],
    images_dir: str | os.PathLike[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: str,
    anyres: AnyResConfig,
    image_token_id: int,
    max_length: int,
    source: str = "data",
) -> tuple[list[Sample], DataReport]:
    """Render, tokenize and length-check validated records; over-length samples are dropped and counted."""
    images_root = Path(images_dir)
    samples: list[Sample] = []
    dropped: list[str] = []
    for record in records:
        where = f"{source}: record {record['id']!r}"
        paths = image_paths_of(record, images_root)
        sizes = tuple(read_image_size(path, where) for path in paths)
        try:
            conversation = from_llava_turns(record["conversations"], images=paths, where=where)
            rendered = render(conversation, template, add_generation_prompt=False)
        except (ConversationError, TemplateError) as exc:
            message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            raise DataError(message) from None
        counts = [num_image_tokens(size, anyres, "default", has_cls=True) for size in sizes]
        try:
            encoded = encode_prompt(
                rendered, tokenizer, image_token_id=image_token_id, image_token_counts=counts, where=where
            )
        except EncodingError as exc:
            raise DataError(str(exc)) from None
        if len(encoded.input_ids) > max_length:
            dropped.append(record["id"])
            continue
        samples.append(Sample(record["id"], paths, sizes, encoded))
    report = DataReport(
        source=source,
        records=len(records),
        samples=len(samples),
        max_length=max_length,
        dropped_over_length=tuple(dropped),
        longest_kept=max((s.length for s in samples), default=0),
        image_samples=sum(bool(s.image_paths) for s in samples),
    )
    return samples, report


class LlavaDataset(Dataset[dict[str, Any]]):
    """Prepared samples; ``__getitem__`` decodes the images into AnyRes pixel tensors."""

    def __init__(self, samples: Sequence[Sample], anyres: AnyResConfig, pixels: PixelConfig) -> None:
        if not samples:
            raise DataError("no training samples left (every record was dropped or the file is empty)")
        self.samples, self.anyres, self.pixels = list(samples), anyres, pixels

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def lengths(self) -> list[int]:
        return [sample.length for sample in self.samples]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        pixel_values, image_sizes = [], []
        for path, size in zip(sample.image_paths, sample.image_sizes_wh):
            with PIL.Image.open(path) as image:
                rgb = rgb_for_model(image)
                rgb.load()
            if rgb.size != size:
                raise DataError(
                    f"record {sample.record_id!r}: {path} changed size since loading ({size} -> {rgb.size})"
                )
            pixels = preprocess(rgb, self.anyres, self.pixels)
            pixel_values.append(pixels.pixel_values)
            image_sizes.append(pixels.image_size_hw)
        return {
            "input_ids": torch.tensor(sample.encoded.input_ids, dtype=torch.long),
            "labels": torch.tensor(sample.encoded.labels, dtype=torch.long),
            "pixel_values": pixel_values,
            "image_sizes": image_sizes,
        }


def load_dataset(
    json_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    template: str,
    anyres: AnyResConfig,
    pixels: PixelConfig,
    image_token_id: int,
    max_length: int,
) -> tuple[LlavaDataset, DataReport]:
    """Read, validate and prepare ``json_path`` (images under ``images_dir``) into a dataset and a report."""
    source = str(json_path)
    records = validate_all(read_records(json_path), source)
    samples, report = prepare_samples(
        records,
        images_dir,
        tokenizer,
        template=template,
        anyres=anyres,
        image_token_id=image_token_id,
        max_length=max_length,
        source=source,
    )
    if not samples:
        raise DataError(
            f"{source}: all {report.records} record(s) were dropped as longer than max_length={max_length}"
        )
    return LlavaDataset(samples, anyres, pixels), report
