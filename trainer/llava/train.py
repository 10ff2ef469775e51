"""Train one LLaVA stage: ``python -m trainer.llava.train --config tiny --stage 1 --data J --images D --out O``.

Stage 1 assembles the model from parts (``--vision-tower``, ``--language-model``, ``--tokenizer``) unless
``--init`` names a saved LLaVA-NeXT directory; stage 2 normally starts from stage 1's export
(``--init RUN1/final``). Runs single-process, or distributed with ``accelerate launch [--cpu]
--num_processes N -m trainer.llava.train ...``. Writes to ``--out``: ``run_config.json`` (config, sources,
data report), ``metrics.jsonl``, ``checkpoints/step-*`` and, when the run finishes, ``final/`` (transformers
model + processor). ``--resume`` continues from the newest checkpoint with the same data order. SIGTERM
checkpoints and exits with status 143; bad input exits with status 2 and a message naming the problem.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from trainer.llava.assemble import (
    AssemblyError,
    LlavaParts,
    anyres_of,
    assemble_llava,
    load_llava,
    pixel_config_of,
    set_anyres_grids,
    standardize_projector_input,
    vision_features,
)
from trainer.llava.collate import LlavaCollator
from trainer.llava.config import PRESETS, ConfigError, StageConfig, stage_preset
from trainer.llava.data import DataError, DataReport, LlavaDataset, load_dataset
from trainer.llava.export import ExportError, export_transformers
from trainer.llava.sampler import length_grouped_batches
from trainer.llava.stages import compute_loss, configure_stage, parameter_counts, set_train_mode
from trainer.runtime.checkpoint import CheckpointError
from trainer.runtime.data_order import DataOrderError
from trainer.runtime.loop import RunResult, TrainJob, make_accelerator, run_training, seed_everything
from vision_common.atomic import atomic_write_json
from vision_common.chat.conversation import DEFAULT_IMAGE_TOKEN
from vision_common.cli_help import HelpFormatter

FINAL_DIR = "final"
RUN_CONFIG_NAME = "run_config.json"
# 128 + SIGTERM, what a shell reports for a terminated process: the run did not finish.
EXIT_STOPPED_BY_SIGNAL = 143
EXIT_BAD_INPUT = 2


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.llava.train",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--config", choices=PRESETS, required=True, help="stage preset")
    parser.add_argument(
        "--stage", type=int, choices=(1, 2), required=True, help="1: alignment, 2: instructions"
    )
    parser.add_argument("--data", type=Path, required=True, help="LLaVA conversation JSON")
    parser.add_argument(
        "--images", type=Path, required=True, help="folder the records' image paths are under"
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--init", type=Path, help="start from this LLaVA-NeXT transformers directory")
    parser.add_argument("--vision-tower", type=Path, help="transformers CLIP vision tower directory")
    parser.add_argument("--language-model", type=Path, help="transformers causal LM directory")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer directory (default: --language-model)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--max-steps", type=int, help="override the preset's number of updates")
    parser.add_argument("--seed", type=int, help="override the preset's seed")
    parser.add_argument(
        "--checkpoint-every", type=int, help="override: checkpoint every N updates (0: end only)"
    )
    parser.add_argument("--num-workers", type=int, help="override: DataLoader worker processes")
    parser.add_argument(
        "--grad-accum",
        type=int,
        help="override: micro-batches per update (global batch = micro-batch size x this x processes)",
    )
    parser.add_argument("--learning-rate", type=float, help="override the preset's peak learning rate")
    parser.add_argument(
        "--projector-lr",
        type=float,
        help="override: stage-2 projector learning rate (LLaVA's mm_projector_lr)",
    )
    parser.add_argument(
        "--tune-vision",
        action="store_true",
        help="stage 2: train the vision tower too (LLaVA-NeXT's recipe), at --vision-lr",
    )
    parser.add_argument(
        "--vision-lr",
        type=float,
        help="with --tune-vision: the tower's learning rate (LLaVA-NeXT's mm_vision_tower_lr; default: the base rate)",
    )
    parser.add_argument("--micro-batch-size", type=int, help="override the preset's samples per micro-batch")
    parser.add_argument(
        "--max-length", type=int, help="override: drop samples longer than this many tokens (images expanded)"
    )
    parser.add_argument(
        "--stop-after-steps",
        type=int,
        help="stop (with a checkpoint) after this many updates, as a preemption would; resume later",
    )
    parser.add_argument(
        "--anyres-grids",
        type=parse_grids,
        help="AnyRes tile grids as COLSxROWS list, e.g. '1x2,2x1,2x2' (assembly only; '1x1' = base tile only, "
        "the no-AnyRes ablation)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return parser


def parse_grids(text: str) -> tuple[tuple[int, int], ...]:
    """'1x2,2x1' -> ((1, 2), (2, 1)); argparse turns the ValueError into a usage error naming the flag."""
    grids = []
    for part in text.split(","):
        cols, sep, rows = part.strip().partition("x")
        if not sep or not cols.isdigit() or not rows.isdigit() or int(cols) < 1 or int(rows) < 1:
            raise argparse.ArgumentTypeError(f"grids must be COLSxROWS with positive integers, got {part!r}")
        grids.append((int(cols), int(rows)))
    return tuple(grids)


def stage_config_from_args(args: argparse.Namespace) -> StageConfig:
    cfg = stage_preset(args.config, args.stage)
    if getattr(args, "anyres_grids", None):
        # From parts: the grids of the new model; with --init: the loaded model's grids are replaced (a
        # base-tile drill continued at AnyRes, docs/recipe.md).
        cfg = replace(cfg, architecture=replace(cfg.architecture, anyres_grids=args.anyres_grids))
    stage_overrides: dict[str, Any] = {
        "projector_lr": getattr(args, "projector_lr", None),
        "tune_vision": True if getattr(args, "tune_vision", False) else None,
        "vision_lr": getattr(args, "vision_lr", None),
        "micro_batch_size": getattr(args, "micro_batch_size", None),
        "max_length": getattr(args, "max_length", None),
    }
    stage_overrides = {k: v for k, v in stage_overrides.items() if v is not None}
    if stage_overrides:
        cfg = replace(cfg, **stage_overrides)  # __post_init__ re-validates (e.g. projector_lr in stage 1)
    overrides: dict[str, Any] = {
        "learning_rate": getattr(args, "learning_rate", None),
        "max_steps": args.max_steps,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "num_workers": args.num_workers,
        "grad_accum": getattr(args, "grad_accum", None),
    }
    try:
        return cfg.with_runtime(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_model(args: argparse.Namespace, cfg: StageConfig) -> LlavaParts:
    if args.init is not None:
        if args.vision_tower or args.language_model or args.tokenizer:
            raise ConfigError(
                "--init loads a whole model; do not combine it with --vision-tower/--language-model"
            )
        parts = load_llava(args.init)
        if getattr(args, "anyres_grids", None):
            set_anyres_grids(parts, cfg.architecture.anyres_grids)
        return parts
    if args.vision_tower is None or args.language_model is None:
        raise ConfigError("without --init, both --vision-tower and --language-model are required")
    return assemble_llava(args.vision_tower, args.language_model, args.tokenizer, cfg.architecture)


def standardize_from_data(parts: LlavaParts, dataset: LlavaDataset, images: int) -> int:
    """Fold the feature statistics of up to ``images`` evenly spaced training images into the projector;
    returns how many images were used (every process computes the same, so replicas stay identical)."""
    with_images = [i for i, sample in enumerate(dataset.samples) if sample.image_paths]
    if not with_images or images == 0:
        return 0
    step = max(1, len(with_images) // images)
    picked = with_images[::step][:images]
    crops = [pixels for index in picked for pixels in dataset[index]["pixel_values"]]
    features = vision_features(parts.model, torch.cat(crops))  # every crop of every picked image
    standardize_projector_input(parts.model, features)
    return len(picked)


def sources_of(args: argparse.Namespace) -> dict[str, str | None]:
    def resolved(path: Path | None) -> str | None:
        return None if path is None else str(path.resolve())

    return {
        "init": resolved(args.init),
        "vision_tower": resolved(args.vision_tower),
        "language_model": resolved(args.language_model),
        "tokenizer": resolved(args.tokenizer or args.language_model) if args.init is None else None,
        "data": resolved(args.data),
        "images": resolved(args.images),
    }


def build_job(
    parts: LlavaParts, dataset: LlavaDataset, cfg: StageConfig, description: dict[str, Any]
) -> TrainJob:
    groups = configure_stage(parts.model, cfg)
    lengths = dataset.lengths

    def plan_epoch(epoch: int) -> list[list[int]]:
        return length_grouped_batches(
            lengths,
            cfg.micro_batch_size,
            seed=cfg.runtime.seed,
            epoch=epoch,
            group_by_length=cfg.group_by_length,
        )

    return TrainJob(
        model=parts.model,
        dataset=dataset,
        collate=LlavaCollator(pad_token_id=parts.processor.tokenizer.pad_token_id),
        plan_epoch=plan_epoch,
        compute_loss=compute_loss,
        param_groups=lambda model: groups,
        set_train_mode=set_train_mode,
        description=description,
    )


def dataset_for(
    parts: LlavaParts, data: str | Path, images: str | Path, cfg: StageConfig
) -> tuple[LlavaDataset, DataReport]:
    """The records of ``data`` prepared for this model: its tokenizer, AnyRes grids and pixel settings."""
    tokenizer = parts.processor.tokenizer
    return load_dataset(
        data,
        images,
        tokenizer,
        template=cfg.template,
        anyres=anyres_of(parts.model),
        pixels=pixel_config_of(parts.processor),
        image_token_id=tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN),
        max_length=cfg.max_length,
    )


def train(args: argparse.Namespace) -> RunResult:
    cfg = stage_config_from_args(args)
    seed_everything(cfg.runtime.seed)
    parts = build_model(args, cfg)
    dataset, report = dataset_for(parts, args.data, args.images, cfg)
    standardized = 0
    if args.init is None and cfg.architecture.standardize_images:
        standardized = standardize_from_data(parts, dataset, cfg.architecture.standardize_images)
    # A text-only batch leaves the projector without gradients, which DDP must be told about.
    runtime = replace(cfg.runtime, find_unused_parameters=report.image_samples < report.samples)
    cfg = replace(cfg, runtime=runtime)
    accelerator = make_accelerator(cfg.runtime)
    description = {
        "stage": cfg.stage,
        "preset": cfg.preset,
        "template": cfg.template,
        "sources": sources_of(args),
    }
    job = build_job(parts, dataset, cfg, description)
    if accelerator.is_main_process:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            args.out / RUN_CONFIG_NAME,
            {
                **description,
                "config": cfg.to_dict(),
                "data": report.to_dict(),
                "parameters": parameter_counts(parts.model),
                "projector_input_standardized_on_images": standardized,
                "world_size": accelerator.num_processes,
            },
        )
        print(
            f"data: {report.samples}/{report.records} samples, {len(report.dropped_over_length)} dropped as longer "
            f"than {report.max_length} tokens (longest kept {report.longest_kept})",
            file=sys.stderr,
        )
    result = run_training(
        job,
        cfg.runtime,
        args.out,
        resume=args.resume,
        stop_after_step=args.stop_after_steps,
        accelerator=accelerator,
        progress=not args.no_progress,
    )
    if result.finished and accelerator.is_main_process:
        metadata = {
            **description,
            "steps": result.step,
            "final_loss": result.last_loss,
            "config": cfg.to_dict(),
        }
        export_transformers(parts.model, parts.processor, args.out / FINAL_DIR, metadata)
    accelerator.wait_for_everyone()
    # Tear the process group down before the interpreter exits: a gloo group left alive at exit can abort a
    # rank ("terminate called without an active exception") after a finished run. No-op in one process.
    accelerator.end_training()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    try:
        result = train(args)
    except (ConfigError, DataError, AssemblyError, CheckpointError, ExportError, DataOrderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    state = "finished" if result.finished else f"stopped ({result.stop_reason})"
    if PartialState().is_main_process:
        print(
            f"{state} at step {result.step}/{result.total_steps}; checkpoint {result.checkpoint}",
            file=sys.stderr,
        )
    return EXIT_STOPPED_BY_SIGNAL if result.stop_reason == "signal" else 0


if __name__ == "__main__":
    sys.exit(main())
