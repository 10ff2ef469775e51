"""Customize a CLIP on a retrieved subset: ``python -m trainer.react train --subset S --base M --out O``.

Runs single-process, or distributed with ``accelerate launch [--cpu] --num_processes N -m trainer.react train
...``. Writes to ``--out``: ``run_config.json`` (config, sources, subset report, parameter counts),
``metrics.jsonl``, ``checkpoints/step-*`` and, when the run finishes, ``final/`` (the customized model as an
open_clip directory with ``react_cfg``; ``react_explorer`` loads it) and, with ``--eval-task``, ``zeroshot.json``
(zero-shot top-1/top-5 of the base and the customized model on those tasks, optionally only on
``--eval-classes``: the launcher's before/after table). ``--resume`` continues from the newest
checkpoint with the same data order; SIGTERM checkpoints and exits with status 143; bad input exits with
status 2 and a message naming the problem.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from react_explorer.customized.gated_blocks import (
    ReactModelConfig,
    ReactModelError,
    attach_gated_blocks,
    default_last_k,
    vision_blocks,
)
from react_explorer.customized.model_dir import ClipBundle, load_base, save_model_dir
from trainer.foundation.zeroshot import TaskDataError
from trainer.react.config import PRESETS, STRATEGIES, ReactConfigError, ReactTrainConfig, react_preset
from trainer.react.data import (
    Pair,
    PairDataset,
    PreloadReport,
    SubsetError,
    SubsetReport,
    build_train_transform,
    collate_pairs,
    read_subset,
    shuffled_batches,
)
from trainer.react.loss import local_gamma_positive_loss
from trainer.react.strategies import (
    configure_strategy,
    parameter_counts,
    resolve_strategy,
    train_mode_for,
    unwrap,
)
from trainer.react.zeroshot_eval import (
    before_after_report,
    before_after_table,
    check_tasks,
    parse_class_list,
)
from trainer.runtime.checkpoint import CheckpointError
from trainer.runtime.data_order import DataOrderError
from trainer.runtime.loop import (
    RunResult,
    StepLoss,
    TrainJob,
    make_accelerator,
    run_training,
    seed_everything,
)
from vision_common.atomic import atomic_write_json

FINAL_DIR = "final"
RUN_CONFIG_NAME = "run_config.json"
ZEROSHOT_REPORT = "zeroshot.json"
EXIT_STOPPED_BY_SIGNAL = 143
EXIT_BAD_INPUT = 2
# The fork clamps logit_scale to [0, ln 100] after every update (training/train.py).
MAX_LOGIT_SCALE = math.log(100)
BAD_INPUT = (ReactConfigError, ReactModelError, SubsetError, CheckpointError, DataOrderError)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subset", action="append", required=True, type=Path,
                        help="parquet subset or img2dataset folder (repeat for several)")  # fmt: skip
    parser.add_argument(
        "--base", required=True, help="base model directory, or an open_clip name with --checkpoint"
    )
    parser.add_argument("--checkpoint", help="weights file for an open_clip model name given as --base")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--preset", choices=PRESETS, default="synthworld")
    parser.add_argument(
        "--strategy", choices=STRATEGIES, help="default: gated-image (or what the lock flags say)"
    )
    parser.add_argument("--lock-text", action="store_true", help="the fork's flag: freeze the text tower")
    parser.add_argument("--lock-image", action="store_true", help="freeze the image tower (LiT)")
    parser.add_argument("--lock-image-unlock-gated", action="store_true",
                        help="the fork's flag: freeze the image tower except the gated blocks")  # fmt: skip
    parser.add_argument("--last-k-layers", type=int, help="gated blocks before the last K vision blocks")
    parser.add_argument(
        "--grad-checkpointing", action="store_true", help="recompute gated blocks in backward"
    )
    parser.add_argument("--gamma", type=float, help="positives: text cosine >= gamma (default 0.9)")
    parser.add_argument("--micro-batch-size", type=int, help="pairs per process per micro-batch")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--grad-accum", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--checkpoint-every", type=int, help="checkpoint every N updates (0: end only)")
    parser.add_argument("--num-workers", type=int, help="DataLoader decode processes")
    parser.add_argument("--no-augment", action="store_true", help="use the evaluation transform")
    parser.add_argument("--preload-max-mb", type=int,
                        help="decode the subset once up front when it fits this many MiB (0: per batch)")  # fmt: skip
    parser.add_argument(
        "--skip-missing-images", action="store_true", help="drop (and count) pairs without image"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument(
        "--stop-after-steps", type=int, help="stop with a checkpoint after N updates (preemption)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--eval-task", action="append", default=[], type=Path,
                        help="after training, score base and result zero-shot on this task (repeatable)")  # fmt: skip
    parser.add_argument(
        "--eval-classes", default="", help="comma-separated: score only these classes of the eval tasks"
    )


def config_from_args(args: argparse.Namespace) -> ReactTrainConfig:
    strategy = resolve_strategy(
        args.strategy,
        lock_text=args.lock_text,
        lock_image=args.lock_image,
        lock_image_unlock_gated=args.lock_image_unlock_gated,
    )
    cfg = react_preset(args.preset, strategy)
    own = {
        "last_k_layers": args.last_k_layers,
        "gamma": args.gamma,
        "micro_batch_size": args.micro_batch_size,
        "grad_checkpointing": True if args.grad_checkpointing else None,
        "augment": replace(cfg.augment, enabled=False) if args.no_augment else None,
        "preload_max_mb": args.preload_max_mb,
    }
    runtime = {
        "learning_rate": args.learning_rate,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "grad_accum": args.grad_accum,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "num_workers": args.num_workers,
    }
    try:
        cfg = replace(cfg, **{k: v for k, v in own.items() if v is not None})
        return cfg.with_runtime(**{k: v for k, v in runtime.items() if v is not None})
    except ValueError as exc:
        raise ReactConfigError(str(exc)) from None


def prepare_model(bundle: ClipBundle, cfg: ReactTrainConfig) -> ClipBundle:
    """Attach gated blocks for gated-image (unless the base already has them) and set what trains."""
    if cfg.strategy == "gated-image" and bundle.react is None:
        depth = len(vision_blocks(bundle.model))
        react = ReactModelConfig(
            last_k_layers=cfg.last_k_layers or default_last_k(depth),
            grad_checkpointing=cfg.grad_checkpointing,
        )
        ls_init = bundle.model_cfg.get("vision_cfg", {}).get("ls_init_value")
        attach_gated_blocks(bundle.model, react, ls_init_value=ls_init)
        bundle = replace(bundle, react=react)
    elif bundle.react is not None and cfg.last_k_layers not in (None, bundle.react.last_k_layers):
        raise ReactConfigError(
            f"last_k_layers = {cfg.last_k_layers}, but the base model already has gated blocks for "
            f"last_k_layers = {bundle.react.last_k_layers}"
        )
    configure_strategy(bundle.model, cfg.strategy)
    return bundle


def tokenize_all(tokenizer: Any, captions: Sequence[str], chunk: int = 4096) -> torch.Tensor:
    """[N, L] token ids of every caption (tokenised once, before any worker starts)."""
    return torch.cat([tokenizer(list(captions[i : i + chunk])) for i in range(0, len(captions), chunk)])


def image_geometry(bundle: ClipBundle) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    size = bundle.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    pre = {**(getattr(bundle.model.visual, "preprocess_cfg", {}) or {}), **bundle.preprocess_cfg}
    return size, tuple(pre["mean"]), tuple(pre["std"])


def build_dataset(
    pairs: Sequence[Pair], bundle: ClipBundle, cfg: ReactTrainConfig
) -> tuple[PairDataset, PreloadReport]:
    """The run's dataset: captions tokenised once, images decoded once up front when they fit the budget."""
    size, mean, std = image_geometry(bundle)
    augment = cfg.augment.enabled
    transform = build_train_transform(cfg.augment, size, mean, std) if augment else bundle.preprocess
    dataset = PairDataset(pairs, tokenize_all(bundle.tokenizer, [p.caption for p in pairs]), transform)
    report = dataset.preload(cfg.preload_max_mb * 2**20, deterministic=not augment)
    return dataset, report


def clamp_logit_scale(model: nn.Module) -> None:
    with torch.no_grad():
        unwrap(model).logit_scale.clamp_(0, MAX_LOGIT_SCALE)


def make_compute_loss(gamma: float):
    def compute_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> StepLoss:
        # Clamping before each forward is the fork's clamp after each update, one step later: the value an
        # update produces is clamped before anything reads it (and at export).
        clamp_logit_scale(model)
        output = model(image=batch["images"], text=batch["texts"])
        if isinstance(output, dict):
            image, text, scale = output["image_features"], output["text_features"], output["logit_scale"]
        else:
            image, text, scale = output[0], output[1], output[2]
        loss, _ = local_gamma_positive_loss(image, text, scale, gamma)
        return StepLoss(loss=loss, samples=int(batch["images"].shape[0]), tokens=0)

    return compute_loss


def build_job(bundle: ClipBundle, dataset: PairDataset, cfg: ReactTrainConfig, description: dict) -> TrainJob:
    groups = configure_strategy(bundle.model, cfg.strategy)
    count, batch, seed = len(dataset), cfg.micro_batch_size, cfg.runtime.seed

    def plan_epoch(epoch: int) -> list[list[int]]:
        return shuffled_batches(count, batch, seed=seed, epoch=epoch)

    return TrainJob(
        model=bundle.model,
        dataset=dataset,
        collate=collate_pairs,
        plan_epoch=plan_epoch,
        compute_loss=make_compute_loss(cfg.gamma),
        param_groups=lambda model: groups,
        set_train_mode=train_mode_for(cfg.strategy),
        description=description,
    )


@dataclass(frozen=True)
class CustomizeResult:
    run: RunResult
    final_dir: Path | None
    subset: SubsetReport
    parameters: dict[str, int]


def customize(
    subset: Sequence[Path],
    base: str,
    out: Path,
    cfg: ReactTrainConfig,
    *,
    checkpoint: str | None = None,
    skip_missing_images: bool = False,
    resume: bool = False,
    stop_after_steps: int | None = None,
    progress: bool = True,
) -> CustomizeResult:
    """Load the base, attach gated blocks, train on the subset, export ``out/final`` when finished."""
    seed_everything(cfg.runtime.seed)
    pairs, report = read_subset(subset, skip_missing=skip_missing_images)
    if len(pairs) < cfg.micro_batch_size:
        raise ReactConfigError(
            f"micro_batch_size = {cfg.micro_batch_size} is larger than the subset ({len(pairs)} pairs)"
        )
    bundle = prepare_model(load_base(base, checkpoint), cfg)
    dataset, preload = build_dataset(pairs, bundle, cfg)
    accelerator = make_accelerator(cfg.runtime)
    counts = parameter_counts(bundle.model)
    description = {"preset": cfg.preset, "strategy": cfg.strategy, "base": base, "checkpoint": checkpoint,
                   "subset": [str(s) for s in subset]}  # fmt: skip
    job = build_job(bundle, dataset, cfg, description)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / RUN_CONFIG_NAME, {
            **description, "config": cfg.to_dict(), "subset_report": report.to_dict(), "parameters": counts,
            "preload": preload.to_dict(),
            "react_cfg": bundle.react.to_dict() if bundle.react else None, "world_size": accelerator.num_processes,
        })  # fmt: skip
        print(
            f"{cfg.strategy}: {counts['trainable']:,} of {counts['total']:,} parameters train (gated blocks "
            f"{counts['gated']:,}, image tower {counts['image']:,}, text tower {counts['text']:,}); "
            f"subset {report.pairs} pairs ({report.skipped_missing_images} skipped for missing images); "
            f"preload {preload.kind}: {preload.images} images, {preload.bytes / 2**20:.1f} MiB, "
            f"{preload.seconds:.1f} s",
            file=sys.stderr,
        )
    result = run_training(
        job, cfg.runtime, out, resume=resume, stop_after_step=stop_after_steps, accelerator=accelerator,
        progress=progress,
    )  # fmt: skip
    final = None
    if result.finished and accelerator.is_main_process:
        clamp_logit_scale(bundle.model)
        final = save_model_dir(
            bundle.model, out / FINAL_DIR, model_cfg=bundle.model_cfg, preprocess_cfg=bundle.preprocess_cfg,
            react=bundle.react, tokenizer_dir=bundle.tokenizer_dir,
            extra={"react_training": {**description, "steps": result.step, "final_loss": result.last_loss,
                                      "gamma": cfg.gamma, "subset_pairs": report.pairs}},
        )  # fmt: skip
    accelerator.wait_for_everyone()
    # A gloo group left alive at exit can abort a rank after a finished run (see trainer.llava.train).
    accelerator.end_training()
    return CustomizeResult(result, final, report, counts)


def run_train(args: argparse.Namespace) -> int:
    classes = parse_class_list(args.eval_classes)
    try:
        cfg = config_from_args(args)
        check_tasks(args.eval_task, classes)  # a bad task or class fails now, not after the training run
        result = customize(
            args.subset, args.base, args.out, cfg, checkpoint=args.checkpoint,
            skip_missing_images=args.skip_missing_images, resume=args.resume,
            stop_after_steps=args.stop_after_steps, progress=not args.no_progress,
        )  # fmt: skip
    except (*BAD_INPUT, TaskDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    run = result.run
    if result.final_dir is not None and args.eval_task:
        report = before_after_report(
            str(result.final_dir), args.base, args.eval_task, baseline_checkpoint=args.checkpoint,
            classes=classes, progress=False,
        )  # fmt: skip
        atomic_write_json(args.out / ZEROSHOT_REPORT, report)
        print(before_after_table(report["before"], report["after"]), file=sys.stderr)
    state = "finished" if run.finished else f"stopped ({run.stop_reason})"
    if result.final_dir is not None or not run.finished:
        print(f"{state} at step {run.step}/{run.total_steps}; checkpoint {run.checkpoint}; "
              f"model {result.final_dir}", file=sys.stderr)  # fmt: skip
    return EXIT_STOPPED_BY_SIGNAL if run.stop_reason == "signal" else 0
