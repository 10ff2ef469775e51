"""Benchmark: AnyRes preprocessing of one large photo, ours vs every transformers LlavaNext image processor.

    python -m bench.anyres_preprocess [--size 4032x3024] [--runs 15] [--threads 1] [--image PATH]
                                      [--json-out results.json]

All candidates get the same decoded PIL image (decoding is outside the timing: it is identical for everyone)
and are timed round-robin in one process, so load from other processes hits them alike; the table reports
the median, the minimum and the ratio of medians against the fastest transformers processor. Before timing,
outputs are compared (max |difference|) so a fast-but-wrong path cannot win. The "PIL -> numpy copy" row is
the floor every path pays: getting the pixels out of PIL once.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

from vision_common.anyres.geometry import AnyResConfig, parse_size, transformers_image_processor_kwargs
from vision_common.anyres.pixels import PixelConfig, preprocess
from vision_common.atomic import atomic_write_json


def synthetic_photo(width: int, height: int, seed: int = 0) -> PIL.Image.Image:
    """Smooth gradients plus sensor-like noise: photo-like statistics without needing a file."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xs / width, ys / height, 0.5 + 0.5 * np.sin((xs + ys) / 97.0)], -1) * 220
    noisy = base + rng.normal(0, 12, size=base.shape).astype(np.float32)
    return PIL.Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def transformers_processors(cfg: AnyResConfig) -> dict[str, Any]:
    """Every LlavaNext image processor class this transformers exposes (torchvision-, PIL-backed, ...)."""
    import transformers

    found = {}
    for name in sorted(dir(transformers)):
        if name.startswith("LlavaNextImageProcessor"):
            try:
                found[f"transformers {name}"] = getattr(transformers, name)(
                    **transformers_image_processor_kwargs(cfg)
                )
            except ImportError as exc:  # e.g. the torchvision backend without torchvision
                print(f"skipping {name}: {exc}")
    return found


def build_candidates(image: PIL.Image.Image, cfg: AnyResConfig) -> dict[str, Callable[[], Any]]:
    candidates: dict[str, Callable[[], Any]] = {
        "PIL -> numpy copy (floor)": lambda: np.asarray(image),
        "ours (torch backend)": lambda: (
            preprocess(image, cfg, PixelConfig(resize_backend="torch")).pixel_values
        ),
        "ours (pil backend)": lambda: preprocess(image, cfg, PixelConfig(resize_backend="pil")).pixel_values,
    }
    for label, processor in transformers_processors(cfg).items():
        candidates[label] = lambda processor=processor: processor(image, return_tensors="pt")["pixel_values"][
            0
        ]
    return candidates


def parity(candidates: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Max |ours - transformers| for each pairing that should be identical."""
    pairs = {
        "ours (torch backend)": "transformers LlavaNextImageProcessor",
        "ours (pil backend)": "transformers LlavaNextImageProcessorPil",
    }
    return {
        f"{ours} vs {theirs}": float((candidates[ours]() - candidates[theirs]()).abs().max())
        for ours, theirs in pairs.items()
        if theirs in candidates
    }


def run(candidates: dict[str, Callable[[], Any]], runs: int, warmup: int) -> dict[str, list[float]]:
    for function in candidates.values():
        for _ in range(warmup):
            function()
    timings: dict[str, list[float]] = {label: [] for label in candidates}
    for _ in tqdm(range(runs), desc="rounds", unit="round"):
        for label, function in candidates.items():  # round-robin: background load hits every candidate
            start = time.perf_counter()
            function()
            timings[label].append(time.perf_counter() - start)
    return timings


def table(timings: dict[str, list[float]]) -> tuple[str, list[dict[str, Any]]]:
    medians = {label: statistics.median(values) for label, values in timings.items()}
    reference = min(value for label, value in medians.items() if label.startswith("transformers"))
    rows = [
        {
            "candidate": label,
            "median_ms": round(medians[label] * 1e3, 2),
            "min_ms": round(min(values) * 1e3, 2),
            "ratio_vs_fastest_transformers": round(medians[label] / reference, 3),
        }
        for label, values in sorted(timings.items(), key=lambda item: medians[item[0]])
    ]
    width = max(len(row["candidate"]) for row in rows)
    lines = [f"{'candidate':<{width}}  median ms   min ms  ratio vs fastest transformers"]
    lines += [
        f"{row['candidate']:<{width}}  {row['median_ms']:9.1f} {row['min_ms']:8.1f}  "
        f"{row['ratio_vs_fastest_transformers']:.2f}x"
        for row in rows
    ]
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.anyres_preprocess", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--size", default="4032x3024", help="synthetic photo size WxH (default %(default)s)")
    parser.add_argument("--image", help="use this image file instead of a synthetic photo (decoded once)")
    parser.add_argument(
        "--runs", type=int, default=15, help="timed rounds per candidate (default %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per candidate first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default %(default)s)")
    parser.add_argument("--json-out", help="also write the results here (atomically)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--runs and --threads must be >= 1, --warmup >= 0")
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(args.threads)

    if args.image:
        try:
            with PIL.Image.open(args.image) as opened:
                image = opened.convert("RGB")
        except OSError as exc:
            parser.error(f"--image {args.image}: cannot read image ({exc})")
    else:
        image = synthetic_photo(*size)
    cfg = AnyResConfig.llava_1_6()
    candidates = build_candidates(image, cfg)
    max_diffs = parity(candidates)
    timings = run(candidates, args.runs, args.warmup)
    text, rows = table(timings)

    environment = {
        "image": f"{image.width}x{image.height}" + (f" ({args.image})" if args.image else " (synthetic)"),
        "config": "LLaVA-1.6 tile 336, patch 14",
        "runs": args.runs,
        "torch_threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "pillow": PIL.__version__,
    }
    print(", ".join(f"{key}={value}" for key, value in environment.items()))
    print(text)
    for pairing, diff in max_diffs.items():
        print(f"max |diff| {pairing}: {diff:.3g}")
    if args.json_out:
        atomic_write_json(
            args.json_out, {"environment": environment, "rows": rows, "max_abs_diff": max_diffs}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
