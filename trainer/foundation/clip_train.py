"""Contrastive training of the tiny SynthWorld CLIP on a world's web pool, on a wall-clock budget.

    python -m trainer.foundation.clip_train --world DIR --tokenizer DIR --out DIR [--max-minutes 7] [...]

Recipe (``default`` preset): <= 7 minutes on 2 CPU cores, the whole command included (setup, training, the
held-out retrieval check and the atomic save). The output is an open_clip ``local-dir:`` model directory (see
``tiny_clip.save_open_clip_dir``) with the training metrics under ``"training"`` in ``open_clip_config.json``.

Two phases: a shape warm-up (the first ``shape_warmup_fraction`` of the budget trains only the image tower, on
the shape word of captions that name one), then contrastive training with the caption-word heads.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

# Idle OpenMP threads must sleep, not spin: with DataLoader workers (and other jobs) sharing 2 cores, spinning
# compute threads starve the decoder and each other (measured 18-72 vs 130-146 pairs/s under load). libgomp
# reads this once when torch loads it, so it has to be set before the first ``import torch`` of the process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from open_clip.loss import ClipLoss  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from tqdm import tqdm  # noqa: E402

from trainer.foundation.clip_aux import (  # noqa: E402
    CONCEPT_GROUPS,
    CaptionWordHeads,
    PatchTokens,
    PatchWordHeads,
    caption_sign_word_multi_hot,
    caption_word_multi_hot,
    caption_word_targets,
    patch_head_groups,
)
from trainer.foundation.clip_data import (  # noqa: E402
    POOL_RELATIVE_PATH,
    PoolPair,
    PoolPairsDataset,
    make_loader,
    read_pool,
    split_pairs,
    train_transform,
)
from trainer.foundation.clip_dense import (  # noqa: E402
    DenseSupervision,
    add_dense_arguments,
    dense_group_weights,
    dense_overrides,
    load_dense_tiles,
)
from trainer.foundation.clip_sampler import (  # noqa: E402
    BucketBatchSampler,
    batches_forever,
    caption_buckets,
    named_subset_batches,
)
from trainer.foundation.clip_schedule import held_out_recall, lr_at, param_groups, run_progress  # noqa: E402
from trainer.synthworld.concepts import COLOR_NAMES  # noqa: E402
from vision_common.tiny_clip import (  # noqa: E402
    OPEN_CLIP_WEIGHTS_NAME,
    TinyClipConfig,
    count_parameters,
    create_tiny_clip,
    save_open_clip_dir,
)

# The caption-word group the warm-up trains (clip_aux.CONCEPT_GROUPS).
SHAPE_GROUP = "shape"
# The ViT block whose output LLaVA's projector reads (vision_feature_layer -2 = the second-to-last block).
PATCH_FEATURE_LAYER = -2
# Time kept back from --max-minutes for the final retrieval check and the save (measured: a few seconds).
FINAL_RESERVE_S = 10.0
# open_clip clamps the learned temperature at 100 so logits cannot blow up.
MAX_LOGIT_SCALE = math.log(100)


@dataclass(frozen=True)
class ClipTrainConfig:
    """Optimisation recipe. ``tiny()`` is a seconds-long smoke run; ``default()`` the 7-minute CPU recipe."""

    model_preset: str = "default"
    # Batch 64 at lr 1e-3 beat 128 at 2e-3 (and 64 at 5e-3) on every task at the same 7 minutes (docs).
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    max_minutes: float = 7.0
    # Optional step cap (None: the time budget alone decides); tests use it for determinism.
    max_steps: int | None = None
    val_count: int = 256
    min_crop_scale: float = 0.8
    # Share of each colour's pairs served in single-colour batches (hard negatives; see clip_sampler).
    same_color_batch_fraction: float = 0.5
    # Learning-rate multiplier of the text tower (0.1 was tried against the shape-word collapse: it kept the
    # words apart but did not teach the image tower shapes; the caption-word heads below do).
    text_lr_scale: float = 1.0
    # Weight of the auxiliary caption-word heads (clip_aux): 0 disables them. 3 gave the most shape information
    # in the image embedding (linear probe 21% vs 15% at 1 and 12% without heads; chance 10%).
    aux_weight: float = 3.0
    # Share of the run (by time or step cap) spent on the shape caption-word head alone, before any contrastive
    # step: no text tower, no other heads, only pairs whose caption names a shape. Trained jointly, colour wins
    # and the ViT learns no shape (diagnostic, 500 steps of caption-word heads alone: shape task 14% with all
    # four heads, 20% with shape + colour, 38-50% with shape only); after the warm-up the contrastive phase
    # keeps the shape features and aligns the shape words to them (docs/foundation_models.md).
    shape_warmup_fraction: float = 0.3
    # Weight of the patch-level caption-word heads (clip_aux.PatchWordHeads) on the layer LLaVA reads
    # (``PATCH_FEATURE_LAYER``); 0 disables them. They make the patch tokens say what is where (docs).
    patch_aux_weight: float = 1.0
    # Weight, inside the patch heads, of the sign-word group (clip_aux.SIGN_WORD_GROUPS; 0 leaves it out). It
    # replaces the sign-code character groups (measured not to teach reading codes; docs/foundation_models.md).
    patch_sign_weight: float = 0.0
    # Dense patch labels from TRAIN scenes (clip_dense): weight (0: off), groups after the warm-up, scenes, tiles.
    dense_weight: float = 0.0
    dense_groups: tuple[str, ...] = ("shape",)
    dense_scenes: int = 2000
    dense_batch: int = 16
    init_from: str | None = None  # continue from this open_clip dir's weights (same preset), e.g. for screens
    num_workers: int = 1
    torch_threads: int = 2
    # bf16 autocast for the matmuls (LayerNorm, softmax and the loss stay fp32): ~1.5x more steps per minute on
    # CPUs with native bf16 (AVX512-BF16/AMX); "auto" falls back to fp32 where bf16 would be emulated.
    precision: str = "auto"
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        TinyClipConfig.from_preset(self.model_preset)  # raises on an unknown preset
        if self.batch_size < 2:
            raise ValueError("ClipTrainConfig.batch_size must be >= 2 (contrastive loss needs negatives)")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("ClipTrainConfig.lr must be > 0 and weight_decay >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("ClipTrainConfig.min_lr_ratio must be in [0, 1]")
        if self.max_minutes <= 0:
            raise ValueError("ClipTrainConfig.max_minutes must be positive")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError("ClipTrainConfig.max_steps must be positive or None")
        if self.warmup_steps < 0 or self.val_count < 0 or self.num_workers < 0 or self.torch_threads < 1:
            raise ValueError(
                "ClipTrainConfig: warmup_steps/val_count/num_workers must be >= 0, torch_threads >= 1"
            )
        if self.aux_weight < 0 or self.patch_aux_weight < 0 or self.patch_sign_weight < 0:
            raise ValueError(
                "ClipTrainConfig.aux_weight, patch_aux_weight and patch_sign_weight must be >= 0"
            )
        if self.dense_weight < 0 or self.dense_scenes < 1 or self.dense_batch < 1:
            raise ValueError("ClipTrainConfig: dense_weight >= 0, dense_scenes and dense_batch >= 1")
        dense_group_weights(self.dense_groups, False, "")  # raises on an unknown group
        if not 0 <= self.shape_warmup_fraction < 1:
            raise ValueError("ClipTrainConfig.shape_warmup_fraction must be in [0, 1)")
        if self.shape_warmup_fraction > 0 and self.aux_weight == 0:
            raise ValueError(
                "ClipTrainConfig: shape_warmup_fraction > 0 trains the shape caption-word head, so aux_weight "
                "must be > 0"
            )
        if not 0 < self.text_lr_scale <= 1:
            raise ValueError("ClipTrainConfig.text_lr_scale must be in (0, 1]")
        if not 0 <= self.same_color_batch_fraction <= 1:
            raise ValueError("ClipTrainConfig.same_color_batch_fraction must be in [0, 1]")
        if not 0 < self.min_crop_scale <= 1:
            raise ValueError("ClipTrainConfig.min_crop_scale must be in (0, 1]")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"ClipTrainConfig.precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.val_count and self.val_count < 2:
            raise ValueError("ClipTrainConfig.val_count must be 0 or >= 2 (recall@1 needs distractors)")

    @classmethod
    def tiny(cls) -> ClipTrainConfig:
        return cls(
            model_preset="tiny",
            batch_size=16,
            warmup_steps=5,
            max_minutes=0.5,
            val_count=16,
            log_every=5,
            shape_warmup_fraction=0.25,
        )

    @classmethod
    def default(cls) -> ClipTrainConfig:
        return cls()


def use_bf16(precision: str) -> bool:
    if precision != "auto":
        return precision == "bf16"
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private probe; absent means we cannot tell, so stay exact
        return False


def _tokenize_captions(tokenizer: Any, pairs: list[PoolPair], chunk: int = 4096) -> torch.Tensor:
    parts = [tokenizer([p.caption for p in pairs[i : i + chunk]]) for i in range(0, len(pairs), chunk)]
    return torch.cat(parts).long()  # [N, L]


def train_clip(
    world: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    cfg: ClipTrainConfig,
    *,
    started_at: float | None = None,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Train, evaluate held-out recall@1, save the model directory; return the metrics written with it."""
    started_at = time.monotonic() if started_at is None else started_at
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    model_cfg = TinyClipConfig.from_preset(cfg.model_preset)
    model, _, val_transform, tokenizer = create_tiny_clip(model_cfg, tokenizer_dir, seed=cfg.seed)
    if cfg.init_from is not None:
        model.load_state_dict(load_file(str(Path(cfg.init_from) / OPEN_CLIP_WEIGHTS_NAME)))

    pairs = read_pool(world / POOL_RELATIVE_PATH)
    train_pairs, val_pairs = split_pairs(pairs, min(cfg.val_count, len(pairs) // 5), cfg.seed)
    if len(train_pairs) < cfg.batch_size:
        raise ValueError(
            f"{world / POOL_RELATIVE_PATH}: {len(train_pairs)} training pairs < batch size {cfg.batch_size}"
        )
    augment = train_transform(
        model_cfg.image_size,
        model_cfg.image_mean,
        model_cfg.image_std,
        resize_mode=model_cfg.resize_mode,
        min_scale=cfg.min_crop_scale,
    )
    train_set = PoolPairsDataset(train_pairs, _tokenize_captions(tokenizer, train_pairs), augment)
    sampler = BucketBatchSampler(
        caption_buckets([p.caption for p in train_pairs], COLOR_NAMES),
        cfg.batch_size,
        cfg.same_color_batch_fraction,
        cfg.seed,
    )
    loader = make_loader(
        train_set,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        batch_sampler=sampler,
    )

    heads = CaptionWordHeads(model_cfg.embed_dim, CONCEPT_GROUPS) if cfg.aux_weight > 0 else None
    word_targets = caption_word_targets([p.caption for p in train_pairs], CONCEPT_GROUPS)
    warmup_batches, warmup_rows = None, torch.zeros(0, dtype=torch.long)
    if cfg.shape_warmup_fraction > 0:  # no loader worker is started for an unused warm-up
        warmup_batches, warmup_rows = named_subset_batches(
            train_set,
            word_targets,
            list(CONCEPT_GROUPS).index(SHAPE_GROUP),
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            seed=cfg.seed,
            where=f"{world / POOL_RELATIVE_PATH} (shape warm-up; set shape_warmup_fraction=0 to skip it)",
        )
    warmup_weights = [1.0 if name == SHAPE_GROUP else 0.0 for name in CONCEPT_GROUPS]
    patch_groups, patch_weights, patch_warmup_weights = patch_head_groups(cfg.patch_sign_weight, SHAPE_GROUP)
    patch_heads = PatchWordHeads(model_cfg.vision_width, patch_groups) if cfg.patch_aux_weight > 0 else None
    dense = None
    if cfg.dense_weight > 0:
        tiles = load_dense_tiles(world, cfg.dense_scenes, model_cfg.image_size, model_cfg.patch_size)
        dense = DenseSupervision(tiles, model_cfg.vision_width, cfg.dense_groups, cfg.dense_batch,
                                 model_cfg.image_mean, model_cfg.image_std, cfg.seed)  # fmt: skip
    hooked = patch_heads is not None or dense is not None
    patch_tokens = PatchTokens(model.visual, PATCH_FEATURE_LAYER) if hooked else None
    captions = [p.caption for p in train_pairs]
    word_multi_hot = caption_word_multi_hot(captions, CONCEPT_GROUPS)
    if len(patch_groups) > len(CONCEPT_GROUPS):
        word_multi_hot = torch.cat([word_multi_hot, caption_sign_word_multi_hot(captions)], dim=1)
    groups = param_groups(model, cfg.weight_decay, cfg.text_lr_scale)
    for extra in (heads, patch_heads, None if dense is None else dense.heads):
        if extra is not None:
            groups.append({"params": list(extra.parameters()), "weight_decay": 0.0, "lr_scale": 1.0})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=1e-6)
    loss_fn = ClipLoss()
    bf16 = use_bf16(cfg.precision)
    budget_s = max(1.0, cfg.max_minutes * 60 - FINAL_RESERVE_S - (time.monotonic() - started_at))
    train_started = time.monotonic()
    history: list[dict[str, float]] = []
    step, seen, ema_loss, ema_clip = 0, 0, None, None
    bar = tqdm(total=cfg.max_steps, desc="clip", unit="step", disable=not progress_bar)
    model.train()
    main_batches = batches_forever(loader)
    warmup_steps_done = 0
    while True:
        elapsed = time.monotonic() - train_started
        progress = run_progress(step, cfg.max_steps, elapsed, budget_s)
        if progress >= 1.0:
            break
        warming_up = progress < cfg.shape_warmup_fraction
        images, ids, index = next(warmup_batches if warming_up else main_batches)  # type: ignore[arg-type]
        rows = warmup_rows[index] if warming_up else index  # rows of train_pairs
        targets = word_targets[rows]
        warmup_steps_done += int(warming_up)
        lr = lr_at(
            step, progress, base_lr=cfg.lr, warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio
        )
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        n_pool = images.shape[0]
        if dense is not None:  # one tower forward for pool images and dense tiles (the hook keeps one)
            dense_pixels, dense_labels = dense.next_batch()
            images = torch.cat([images, dense_pixels])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            # What CLIP.forward does, keeping the unnormalised image embedding for the caption-word heads
            # (through the normalisation their gradient would shrink by the embedding norm, ~10x at init).
            raw_image_features = model.encode_image(images).float()[:n_pool]
            if not warming_up:
                text_features = model.encode_text(ids, normalize=True).float()
        image_features = torch.nn.functional.normalize(raw_image_features, dim=-1)
        aux = None
        if warming_up:
            assert heads is not None  # guaranteed by ClipTrainConfig validation
            contrastive = image_features.new_zeros(())
            aux = heads.loss(raw_image_features, targets, warmup_weights)
            loss = cfg.aux_weight * aux
        else:
            loss = contrastive = loss_fn(image_features, text_features, model.logit_scale.exp())
            if heads is not None:
                aux = heads.loss(raw_image_features, targets)
                loss = contrastive + cfg.aux_weight * aux
        patch_aux = dense_loss = None
        if dense is not None and patch_tokens is not None:
            dense_loss = dense.loss(
                patch_tokens.latest()[n_pool:].float(), dense_labels, warming_up, SHAPE_GROUP
            )
            loss = loss + cfg.dense_weight * dense_loss
        if patch_heads is not None and patch_tokens is not None:
            patch_aux = patch_heads.loss(
                patch_tokens.latest()[:n_pool].float(),
                word_multi_hot[rows],
                patch_warmup_weights if warming_up else patch_weights,
            )
            loss = loss + cfg.patch_aux_weight * patch_aux
        if not torch.isfinite(loss):
            raise FloatingPointError(f"CLIP loss became {loss.item()} at step {step} (lr {lr:.2e})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        step += 1
        seen += n_pool
        ema_loss = loss.item() if ema_loss is None else 0.9 * ema_loss + 0.1 * loss.item()
        ema_clip = contrastive.item() if ema_clip is None else 0.9 * ema_clip + 0.1 * contrastive.item()
        if step % cfg.log_every == 0 or step == 1:
            with torch.no_grad():
                batch_acc = (
                    torch.zeros(())
                    if warming_up
                    else (image_features @ text_features.T)
                    .argmax(1)
                    .eq(torch.arange(len(ids)))
                    .float()
                    .mean()
                )
            history.append(
                {"step": step, "phase": "shape_warmup" if warming_up else "clip", "loss": round(loss.item(), 4), "clip_loss": round(contrastive.item(), 4),
                 "aux_loss": None if aux is None else round(aux.item(), 4),
                 "patch_aux_loss": None if patch_aux is None else round(patch_aux.item(), 4), "lr": lr,
                 "dense_loss": None if dense_loss is None else round(dense_loss.item(), 4),
                 "batch_i2t_acc": round(batch_acc.item(), 4), "logit_scale": round(model.logit_scale.exp().item(), 3),
                 "elapsed_s": round(elapsed, 1)}
            )  # fmt: skip
        bar.update(1)
        bar.set_postfix(loss=f"{ema_loss:.3f}", lr=f"{lr:.1e}")
    bar.close()
    train_seconds = time.monotonic() - train_started
    if patch_tokens is not None:
        patch_tokens.remove()

    recall: dict[str, float] = {}
    if val_pairs:
        val_set = PoolPairsDataset(val_pairs, _tokenize_captions(tokenizer, val_pairs), val_transform)
        recall = held_out_recall(model, val_set, cfg.batch_size)
    metrics = {
        "config": asdict(cfg),
        "params": count_parameters(model),
        "bf16_autocast": bf16,
        "train_pairs": len(train_pairs),
        "val_pairs": len(val_pairs),
        "steps": step,
        "shape_warmup_steps": warmup_steps_done,
        "samples_seen": seen,
        "epochs": round(seen / len(train_pairs), 3),
        "train_seconds": round(train_seconds, 1),
        "samples_per_second": round(seen / max(train_seconds, 1e-9), 1),
        "final_loss_ema": None if ema_loss is None else round(ema_loss, 4),
        "final_clip_loss_ema": None if ema_clip is None else round(ema_clip, 4),
        "held_out_recall_at_1": recall,
        "history": history,
    }
    model.eval()
    save_open_clip_dir(model, model_cfg, out_dir, tokenizer_dir=tokenizer_dir, extra={"training": metrics})
    metrics["total_seconds"] = round(time.monotonic() - started_at, 1)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.foundation.clip_train",
        description="Train the tiny SynthWorld CLIP (open_clip) contrastively on a world's web pool.",
    )
    parser.add_argument(
        "--world", type=Path, required=True, help="SynthWorld directory (reads pool/pool.parquet)"
    )
    parser.add_argument("--tokenizer", type=Path, required=True, help="SynthWorld tokenizer directory")
    parser.add_argument("--out", type=Path, required=True, help="output open_clip model directory")
    parser.add_argument(
        "--preset", choices=("tiny", "default"), default="default", help="model + recipe preset"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="wall-clock budget for the whole command"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="optional cap on optimiser steps")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--num-workers", type=int, default=None, help="image-decoding DataLoader workers")
    parser.add_argument(
        "--aux-weight", type=float, default=None, help="caption-word head loss weight (0: off)"
    )
    parser.add_argument(
        "--shape-warmup-fraction",
        type=float,
        default=None,
        help="share of the budget spent on the shape caption-word head alone before contrastive training "
        "(default 0.3; 0: off)",
    )
    parser.add_argument(
        "--patch-aux-weight",
        type=float,
        default=None,
        help="patch-level caption-word head loss weight on the layer LLaVA reads (default 1; 0: off)",
    )
    parser.add_argument(
        "--patch-sign-weight",
        type=float,
        default=None,
        help="weight of the sign-word group inside the patch heads (default 0: off)",
    )
    add_dense_arguments(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default 2)")
    parser.add_argument(
        "--precision", choices=("auto", "bf16", "fp32"), default=None, help="matmul precision"
    )
    parser.add_argument("--init-from", default=None, help="start from this open_clip dir's weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="disable the tqdm bar")
    return parser


def config_from_args(args: argparse.Namespace) -> ClipTrainConfig:
    cfg = ClipTrainConfig.tiny() if args.preset == "tiny" else ClipTrainConfig.default()
    overrides = {
        "max_minutes": args.max_minutes,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "num_workers": args.num_workers,
        "torch_threads": args.threads,
        "aux_weight": args.aux_weight,
        "shape_warmup_fraction": args.shape_warmup_fraction,
        "patch_aux_weight": args.patch_aux_weight,
        "patch_sign_weight": args.patch_sign_weight,
        **dense_overrides(args),
        "precision": args.precision,
        "init_from": args.init_from,
    }
    return replace(cfg, seed=args.seed, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    started_at = time.monotonic()
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    metrics = train_clip(
        args.world, args.tokenizer, args.out, cfg, started_at=started_at, progress_bar=not args.no_progress
    )
    recall = metrics["held_out_recall_at_1"]
    print(
        f"clip: {metrics['params']['total']:,} params, {metrics['steps']} steps, {metrics['epochs']} epochs in "
        f"{metrics['train_seconds']} s ({metrics['samples_per_second']} pairs/s); held-out R@1 {recall}; "
        f"saved {args.out} ({metrics['total_seconds']} s total)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
