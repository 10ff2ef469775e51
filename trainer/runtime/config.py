"""``RuntimeConfig``: optimiser, schedule, precision, checkpointing and logging knobs of one training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Precision = Literal["auto", "fp32", "bf16"]
Schedule = Literal["cosine", "constant"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
SCHEDULES: tuple[str, ...] = ("cosine", "constant")


@dataclass(frozen=True)
class RuntimeConfig:
    """How one run optimises, whatever the model.

    ``max_steps`` counts optimiser updates; when it is None the run lasts ``epochs`` passes over the data
    plan. One update consumes ``grad_accum`` micro-batches on every process, so the global batch is
    ``micro_batch_size * grad_accum * world_size`` (the micro-batch size belongs to the data side).
    ``precision="auto"`` is bf16 autocast on CUDA and fp32 elsewhere (CPU bf16 autocast is slower than fp32
    on the machines this project targets, and its rounding would make CPU tests machine-dependent).
    """

    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    schedule: Schedule = "cosine"
    # LLaVA's scripts use warmup_ratio 0.03 of the whole run.
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    max_steps: int | None = None
    epochs: float = 1.0
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    precision: Precision = "auto"
    seed: int = 0
    # 0: checkpoint only at the end and on SIGTERM.
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    num_workers: int = 0
    # DDP must be told when some trainable parameters can miss a step (e.g. a text-only LLaVA batch never
    # touches the projector); finding them costs an extra graph walk, so it is opt-in.
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        if not self.learning_rate > 0:
            raise ValueError(f"RuntimeConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"RuntimeConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"RuntimeConfig.adam_betas must be two values in [0, 1), got {self.adam_betas}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"RuntimeConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"RuntimeConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"RuntimeConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"RuntimeConfig.max_steps must be positive (or None), got {self.max_steps}")
        if self.max_steps is None and not self.epochs > 0:
            raise ValueError(f"RuntimeConfig.epochs must be > 0 when max_steps is None, got {self.epochs}")
        if self.grad_accum < 1:
            raise ValueError(f"RuntimeConfig.grad_accum must be >= 1, got {self.grad_accum}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"RuntimeConfig.max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"RuntimeConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"RuntimeConfig.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"RuntimeConfig.keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.num_workers < 0:
            raise ValueError(f"RuntimeConfig.num_workers must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
