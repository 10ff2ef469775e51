"""AdamW over explicit parameter groups and a warmup + cosine learning-rate multiplier."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.runtime.config import RuntimeConfig


@dataclass(frozen=True)
class ParamGroup:
    """Trainable parameters that share a learning-rate scale (e.g. LLaVA's optional ``mm_projector_lr``)."""

    name: str
    params: tuple[torch.nn.Parameter, ...]
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr_scale > 0:
            raise ValueError(f"ParamGroup {self.name!r}: lr_scale must be > 0, got {self.lr_scale}")


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Warmup length in updates, rounded up as transformers' ``get_warmup_steps`` does."""
    return math.ceil(total_steps * warmup_ratio)


def lr_multiplier(step: int, total_steps: int, cfg: RuntimeConfig) -> float:
    """Factor on the base learning rate for update ``step`` (0-based).

    Linear warmup from 1/warmup to 1, then cosine from 1 to ``min_lr_ratio`` at ``total_steps``; this is
    transformers' ``get_cosine_schedule_with_warmup`` with a floor.
    """
    warm = warmup_steps(total_steps, cfg.warmup_ratio)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warm)
    progress = min(1.0, (step - warm) / decay_steps)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Biases, norms' gains and other 1-D vectors are not weight-decayed (the usual AdamW rule)."""
    return param.ndim < 2 or name.endswith(".bias")


def build_optimizer(
    groups: Sequence[ParamGroup], names: dict[int, str], cfg: RuntimeConfig
) -> torch.optim.AdamW:
    """AdamW with one decay / no-decay pair per ``ParamGroup``; ``names`` maps ``id(param)`` to its name."""
    torch_groups = []
    for group in groups:
        decay = [p for p in group.params if not no_decay(names.get(id(p), ""), p)]
        plain = [p for p in group.params if no_decay(names.get(id(p), ""), p)]
        for params, weight_decay in ((decay, cfg.weight_decay), (plain, 0.0)):
            if params:
                torch_groups.append(
                    {
                        "params": params,
                        "lr": cfg.learning_rate * group.lr_scale,
                        "weight_decay": weight_decay,
                        "group_name": group.name,
                    }
                )
    if not torch_groups:
        raise ValueError("no trainable parameters: every parameter group is empty")
    return torch.optim.AdamW(torch_groups, lr=cfg.learning_rate, betas=cfg.adam_betas, eps=cfg.adam_eps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, cfg: RuntimeConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying ``lr_multiplier`` to every group's own base rate."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, total_steps, cfg))
