"""Does a LLaVA use its image? Its answer loss with the right image, a blank one and another record's image.

    python -m trainer.llava.image_use --model DIR --data JSON --images DIR [--records 64] [--json]

A model that grounds its answers loses more when the image is wrong. This runs the model on ``--records``
records of a LLaVA JSON file (evenly spaced over the file, optionally only ids ending in ``--id-suffix``) three
times: with each record's own images, with blank images (every pixel at the normalisation mean, i.e. zeros),
and with the images of the next selected record resized to the record's own size (so every prompt keeps its
AnyRes token count). Reported: the mean loss per supervised token for each, and the gaps to the right images.
A gap near zero means the answers come from the text prior; the same records and order are used for all three.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from tqdm import tqdm

from llava_demo.anyres_pixels import preprocess, to_rgb
from llava_demo.backends.local_device import pick_device_and_dtype
from llava_demo.conversation import DEFAULT_IMAGE_TOKEN
from trainer.llava.assemble import anyres_of, load_llava, pixel_config_of
from trainer.llava.collate import LlavaCollator
from trainer.llava.data import DataError, LlavaDataset, prepare_samples, read_records, validate_all
from trainer.llava.encode import IGNORE_INDEX
from trainer.llava.eval_data import evenly_spaced

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
                donor = to_rgb(image).resize(size, PIL.Image.BICUBIC)
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


def measure_image_use(
    model_dir: Path,
    data: Path,
    images: Path,
    *,
    records: int = 64,
    id_suffix: str = "",
    template: str = "vicuna_v1",
    batch_size: int = 8,
    max_length: int = 2048,
    device: str = "cpu",
    dtype: str = "float32",
) -> ImageUseReport:
    """Answer loss with the right, a blank and another record's image on ``device`` ("auto", "cpu", "cuda",
    ...). float32 by default: the gaps of a model that barely reads its images are ~1e-3 nats, below bf16's
    resolution of a loss near 1."""
    torch_device, torch_dtype = pick_device_and_dtype(
        device,
        dtype,
        cuda_available=torch.cuda.is_available(),
        mps_available=torch.backends.mps.is_available(),
    )
    parts = load_llava(model_dir)
    model = parts.model.eval().to(torch_device, torch_dtype)
    chosen = [
        record for record in validate_all(read_records(data), str(data)) if record["id"].endswith(id_suffix)
    ]
    chosen = [record for record in chosen if record.get("image")]
    if not chosen:
        raise DataError(f"{data}: no record with an image and an id ending in {id_suffix!r}")
    return image_use_of_records(
        model,
        parts.processor,
        evenly_spaced(chosen, records),
        images,
        template=template,
        batch_size=batch_size,
        max_length=max_length,
        source=str(data),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.llava.image_use", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", type=Path, required=True, help="LLaVA-NeXT transformers directory")
    parser.add_argument("--data", type=Path, required=True, help="LLaVA conversation JSON")
    parser.add_argument("--images", type=Path, required=True, help="image folder of the JSON")
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--id-suffix", default="", help="only records whose id ends with this (e.g. _short)")
    parser.add_argument("--template", default="vicuna_v1")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N, mps")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16 or auto")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.records < 1 or args.batch_size < 1:
        parser.error("--records and --batch-size must be >= 1")
    torch.set_num_threads(2)
    try:
        report = measure_image_use(
            args.model, args.data, args.images, records=args.records, id_suffix=args.id_suffix,
            template=args.template, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
        )  # fmt: skip
    except ValueError as exc:  # DataError (bad records) and an unknown or missing device
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(
            f"{report.records} records, {report.supervised_tokens} answer tokens: loss right {report.loss_right:.4f}, "
            f"blank {report.loss_blank:.4f} (gap {report.gap_blank:+.4f}), other record's image "
            f"{report.loss_other:.4f} (gap {report.gap_other:+.4f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
