"""Does a LLaVA use its image? Its answer loss with the right image, a blank one and another record's image.

    python -m trainer.probes.image_use --model DIR --data JSON --images DIR [--records 64] [--json]

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
from pathlib import Path

import torch

from llava_demo.backends.local_device import pick_device_and_dtype
from trainer.llava.assemble import load_llava
from trainer.llava.data import DataError, read_records, validate_all
from trainer.llava.eval.answer_loss import (
    ImageUseReport,
    image_use_of_records,
)
from trainer.llava.eval.data import evenly_spaced


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
        prog="python -m trainer.probes.image_use", description=__doc__.split("\n")[0]
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
