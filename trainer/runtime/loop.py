"""The training loop: single-process or under ``accelerate launch`` (DDP), with resumable checkpoints.

A trainer describes its work as a ``TrainJob`` (model with ``requires_grad`` already set, dataset, collate,
per-epoch micro-batch plan, loss function, parameter groups) and calls ``run_training``. The loop does the
rest: AdamW + warmup/cosine, gradient accumulation (``no_sync`` on all but the last micro-batch), gradient
clipping, bf16 autocast on CUDA, ``metrics.jsonl`` per update, tqdm on the main process, checkpoints every
``checkpoint_every`` updates, at the end and on SIGTERM, and ``resume`` from the newest checkpoint with the
same data order. Nothing here knows what model it trains.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, gather_object, send_to_device, set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from trainer.runtime.checkpoint import (
    CheckpointError,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    load_trainable_state,
    prune_checkpoints,
    restore_rng,
    save_checkpoint,
    state_digest,
    trainable_state,
)
from trainer.runtime.config import RuntimeConfig
from trainer.runtime.data_order import DataOrder, DataPosition
from trainer.runtime.metrics import MetricsLog, truncate_after_step
from trainer.runtime.schedule import ParamGroup, build_optimizer, build_scheduler, lr_multiplier
from trainer.runtime.stop import StopRequest

CHECKPOINTS_DIR = "checkpoints"
METRICS_NAME = "metrics.jsonl"
# Settings whose change would silently alter the data order or the schedule of a resumed run.
RESUME_MUST_MATCH = ("world_size", "grad_accum", "seed", "total_steps")


@dataclass(frozen=True)
class StepLoss:
    """What ``compute_loss`` returns for one micro-batch: the loss to backpropagate and what it covered."""

    loss: torch.Tensor
    samples: int
    tokens: int


def _train_all(model: torch.nn.Module) -> None:
    model.train()


@dataclass
class TrainJob:
    model: torch.nn.Module
    dataset: Dataset[Any]
    collate: Callable[[list[Any]], Any]
    plan_epoch: Callable[[int], Sequence[Sequence[int]]]
    compute_loss: Callable[[torch.nn.Module, Any], StepLoss]
    param_groups: Callable[[torch.nn.Module], Sequence[ParamGroup]]
    # Put the model in training mode; a job with frozen parts keeps them in eval mode here.
    set_train_mode: Callable[[torch.nn.Module], None] = _train_all
    # Recorded in every checkpoint's state.json (what was trained, from what).
    description: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    step: int
    total_steps: int
    finished: bool
    stop_reason: str | None
    checkpoint: Path | None
    last_loss: float | None
    skipped_micro_batches_per_epoch: int


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) before building a model, so every process starts equal."""
    set_seed(seed)


def resolve_mixed_precision(cfg: RuntimeConfig) -> str:
    """accelerate's ``mixed_precision`` for ``cfg.precision``: bf16 autocast only where CUDA supports it."""
    cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not cuda_bf16:
        raise ValueError("precision='bf16' needs a CUDA device with bf16 support; use 'auto' or 'fp32'")
    return "bf16" if cfg.precision == "bf16" or (cfg.precision == "auto" and cuda_bf16) else "no"


def make_accelerator(cfg: RuntimeConfig) -> Accelerator:
    """An ``Accelerator`` for this machine; without CUDA it is CPU-only, so a multi-process launch uses gloo."""
    # accelerate only forms a CPU process group (MULTI_CPU) when told cpu=True; torchrun-style launches on a
    # machine without GPUs would otherwise start N unconnected single-process runs.
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=resolve_mixed_precision(cfg),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)],
    )


def total_updates(cfg: RuntimeConfig, updates_per_epoch: int) -> int:
    return cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(cfg.epochs * updates_per_epoch))


def _check_resumable(checkpoint_state: Mapping[str, Any], expected: Mapping[str, Any], path: Path) -> None:
    for key in RESUME_MUST_MATCH:
        if checkpoint_state.get(key) != expected[key]:
            raise CheckpointError(
                f"{path}: cannot resume, {key} was {checkpoint_state.get(key)!r} and is now {expected[key]!r} "
                "(the data order or the schedule would change); resume with the original settings"
            )


class _Run:
    """State of one call to ``run_training`` (kept out of module scope; one instance per run)."""

    def __init__(self, job: TrainJob, cfg: RuntimeConfig, out_dir: Path, accelerator: Accelerator) -> None:
        self.job, self.cfg, self.out_dir, self.acc = job, cfg, out_dir, accelerator
        self.checkpoints = out_dir / CHECKPOINTS_DIR
        self.order = DataOrder(
            job.plan_epoch,
            world_size=accelerator.num_processes,
            rank=accelerator.process_index,
            grad_accum=cfg.grad_accum,
        )
        self.total = total_updates(cfg, self.order.updates_in_epoch(0))
        self.fixed = {
            "world_size": accelerator.num_processes,
            "grad_accum": cfg.grad_accum,
            "seed": cfg.seed,
            "total_steps": self.total,
        }

    def save(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, counters: dict[str, Any]) -> Path:
        """Collective: every process contributes its RNG state and weight digest; the main one writes."""
        trainable = trainable_state(self.acc.unwrap_model(model))
        rngs = gather_object([capture_rng()])
        digests = gather_object([state_digest(trainable)])
        path = self.checkpoints / f"step-{counters['step']:08d}"
        if self.acc.is_main_process:
            state = {
                **counters,
                **self.fixed,
                "replica_digests": digests,
                "runtime": self.cfg.to_dict(),
                "job": dict(self.job.description),
            }
            path = save_checkpoint(
                self.checkpoints,
                trainable=trainable,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                rng=rngs,
                state=state,
            )
            prune_checkpoints(self.checkpoints, self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()
        return path


def run_training(
    job: TrainJob,
    cfg: RuntimeConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    stop_after_step: int | None = None,
    accelerator: Accelerator | None = None,
    stop: StopRequest | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``job`` under ``cfg``, writing ``metrics.jsonl`` and ``checkpoints/`` to ``out_dir``.

    ``resume`` continues from the newest checkpoint there (same settings required); without it an
    ``out_dir`` that already holds checkpoints is refused. ``stop_after_step`` ends the run early with a
    checkpoint, exactly as a SIGTERM would (a scheduled preemption; tests use it to compare resumed runs).
    """
    out = Path(out_dir)
    acc = accelerator or make_accelerator(cfg)
    run = _Run(job, cfg, out, acc)
    model = job.model
    groups = list(job.param_groups(model))
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = build_optimizer(groups, names, cfg)
    scheduler = build_scheduler(optimizer, run.total, cfg)

    step, position, counters = 0, DataPosition(), {"samples": 0, "tokens": 0, "elapsed_s": 0.0}
    checkpoint = None
    if resume:
        latest = latest_checkpoint(run.checkpoints)
        if latest is None:
            raise CheckpointError(f"--resume: no checkpoint under {run.checkpoints}")
        checkpoint = load_checkpoint(latest)
        _check_resumable(checkpoint.state, run.fixed, latest)
        load_trainable_state(model, checkpoint.trainable, str(latest))
        step = checkpoint.step
        position = DataPosition(**checkpoint.state["position"])
        counters = {key: checkpoint.state[key] for key in counters}
    elif latest_checkpoint(run.checkpoints) is not None:
        raise CheckpointError(
            f"{run.checkpoints} already holds checkpoints; pass --resume to continue or choose a new --out"
        )

    model, optimizer = acc.prepare(model, optimizer)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.scheduler)
        if len(checkpoint.rng) != acc.num_processes:
            raise CheckpointError(f"{checkpoint.path}: holds {len(checkpoint.rng)} RNG states")
        restore_rng(checkpoint.rng[acc.process_index])

    trainable = [p for p in model.parameters() if p.requires_grad]
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        truncate_after_step(out / METRICS_NAME, step)
    acc.wait_for_everyone()

    started = time.perf_counter() - counters["elapsed_s"]
    last_loss, stop_reason, saved_at = None, None, None
    bar = tqdm(total=run.total, initial=step, disable=not (progress and acc.is_main_process), desc="train")
    log = MetricsLog(out / METRICS_NAME) if acc.is_main_process else None
    with contextlib.ExitStack() as stack:
        stop_request = stack.enter_context(stop or StopRequest())
        stack.callback(bar.close)
        if log is not None:
            stack.enter_context(log)
        while step < run.total and stop_reason is None:
            batches = run.order.rank_batches(position)
            loader = DataLoader(
                job.dataset, batch_sampler=batches, collate_fn=job.collate, num_workers=cfg.num_workers
            )
            micro = iter(loader)
            for _ in range(len(batches) // cfg.grad_accum):
                tick = time.perf_counter()
                job.set_train_mode(model)
                loss_sum, samples, tokens = torch.zeros((), device=acc.device), 0, 0
                for slot in range(cfg.grad_accum):
                    batch = send_to_device(next(micro), acc.device)
                    last = slot == cfg.grad_accum - 1
                    with contextlib.nullcontext() if last else acc.no_sync(model):
                        result = job.compute_loss(model, batch)
                        acc.backward(result.loss / cfg.grad_accum)
                    loss_sum += result.loss.detach().float()
                    samples, tokens = samples + result.samples, tokens + result.tokens
                grad_norm = (
                    acc.clip_grad_norm_(trainable, cfg.max_grad_norm)
                    if cfg.max_grad_norm is not None
                    else None
                )
                lr = cfg.learning_rate * lr_multiplier(step, run.total, cfg)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                epoch = position.epoch
                step, position = step + 1, run.order.advance(position)

                # One all-reduce carries the loss, the counts and the stop vote of every process, so all of
                # them agree on when to stop (a signal may reach only one of them).
                wants_stop = stop_request.requested or step == stop_after_step
                stats = torch.tensor(
                    [loss_sum.item() / cfg.grad_accum, samples, tokens, float(wants_stop)], device=acc.device
                )
                stats = acc.reduce(stats, reduction="sum")
                last_loss = stats[0].item() / acc.num_processes
                counters["samples"] += int(stats[1].item())
                counters["tokens"] += int(stats[2].item())
                elapsed_now = time.perf_counter()
                counters["elapsed_s"] = elapsed_now - started
                seconds = max(elapsed_now - tick, 1e-9)
                if log is not None:
                    log.write(
                        {
                            "step": step,
                            "epoch": epoch,
                            "loss": last_loss,
                            "lr": lr,
                            "grad_norm": None if grad_norm is None else float(grad_norm),
                            "samples_per_s": stats[1].item() / seconds,
                            "tokens_per_s": stats[2].item() / seconds,
                            "elapsed_s": counters["elapsed_s"],
                        }
                    )
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
                if stats[3].item() > 0:
                    stop_reason = "signal" if stop_request.requested else "stop_after_step"
                periodic = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
                if periodic or step == run.total or stop_reason is not None:
                    state = {**counters, "step": step, "position": asdict(position)}
                    saved_at = run.save(model, optimizer, scheduler, state)
                if step >= run.total or stop_reason is not None:
                    break
    return RunResult(
        step=step,
        total_steps=run.total,
        finished=step >= run.total,
        stop_reason=stop_reason,
        checkpoint=saved_at,
        last_loss=last_loss,
        skipped_micro_batches_per_epoch=run.order.skipped_in_epoch(0),
    )
