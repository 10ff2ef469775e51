"""Typed configuration of one REACT customization run, with presets.

A ``ReactTrainConfig`` holds what a run decides: the tuning strategy, the gated blocks (K, checkpointing), the
gamma of the contrastive loss, the micro-batch, the augmentation and the ``RuntimeConfig`` (optimiser,
schedule, checkpointing). Paths (subset, base model, output) come from the CLI.

Strategies (``docs/react_customization.md``; REACT paper section 3.2, dissertation Table 2.6):

* ``gated-image`` (the default): text tower locked, image tower frozen, gated blocks in front of the last K
  vision blocks; only the gates' blocks and ``logit_scale`` train.
* ``locked-text``: text tower locked, the whole image tower trains.
* ``locked-image``: LiT; image tower locked, the text tower trains.
* ``full``: both towers train.

Presets (``react_preset(name, strategy)``):

* ``tiny``: tests; random-init tiny CLIPs, a few updates in seconds, no augmentation (deterministic).
* ``synthworld``: the embedded SynthWorld tiny CLIP (64 px, 4 vision blocks, K = 2) on the species subset the
  explorer retrieves (~600 pairs); <= 10 minutes on 2 CPU cores. Expected (measured, docs/react_customization.md):
  species zero-shot top-1 up by several points, shapes and colours about unchanged.
* ``vit-b-32``: the REACT recipe for CLIP ViT-B/32 (``microsoft/react`` ``react_customization/README.md``): lr
  5e-4 gated-image / 5e-5 otherwise, global batch 4096 (512 per GPU x 8), 32 epochs over 8.53M pairs, warm-up
  5,000 updates, weight decay 0.1, AdamW (0.9, 0.98) eps 1e-6, cosine, K = 6, gradient checkpointing,
  timm augmentation (scale 0.08-1, flip, colour jitter 0.4, RandAugment m9, random erasing 0.25). GPU only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from trainer.runtime.config import RuntimeConfig

Strategy = Literal["gated-image", "locked-text", "locked-image", "full"]
STRATEGIES: tuple[str, ...] = ("gated-image", "locked-text", "locked-image", "full")
PRESETS: tuple[str, ...] = ("tiny", "synthworld", "vit-b-32")
# The fork's recipe: 8,530,639 pairs, global batch 4096, 32 epochs -> 66,645 updates; warm-up 5,000 of them.
VIT_B_32_UPDATES = math.ceil(8_530_639 / 4096) * 32
VIT_B_32_WARMUP_RATIO = 5000 / VIT_B_32_UPDATES


class ReactConfigError(ValueError):
    """An invalid or contradictory REACT setting; the message names the field."""


@dataclass(frozen=True)
class AugmentConfig:
    """Training image augmentation, built with timm's ``create_transform`` (REACT's settings by default).

    ``enabled=False`` uses the model's own evaluation transform (resize + normalise), as the tiny preset does.
    """

    enabled: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float | None = 0.4
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    re_prob: float = 0.25
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "ratio", tuple(float(v) for v in self.ratio))
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ReactConfigError(
                f"augment.scale must be (min, max) with 0 < min <= max <= 1, got {self.scale}"
            )
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ReactConfigError(f"augment.ratio must be (min, max) with 0 < min <= max, got {self.ratio}")
        for name in ("hflip", "re_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ReactConfigError(f"augment.{name} must be a probability, got {getattr(self, name)}")
        if self.color_jitter is not None and self.color_jitter < 0:
            raise ReactConfigError(f"augment.color_jitter must be >= 0 or None, got {self.color_jitter}")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ReactConfigError(
                f"augment.interpolation must be bicubic or bilinear, got {self.interpolation!r}"
            )

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(enabled=False)


@dataclass(frozen=True)
class ReactTrainConfig:
    """One customization run (see the module docstring for the strategies and presets)."""

    preset: str
    strategy: Strategy
    micro_batch_size: int
    runtime: RuntimeConfig
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Gated blocks in front of the last K vision blocks; None: the fork's default for the tower's depth.
    last_k_layers: int | None = None
    grad_checkpointing: bool = False
    # Pairs whose text features have cosine >= gamma are positives of each other (0.9: REACT; 1.0: UniCL).
    gamma: float = 0.9
    # Decode (and, with augmentation off, transform) the whole subset once before training when it fits this
    # many MiB per process; 0: decode every batch (data/PairDataset.preload). 2 GiB holds ~40k SynthWorld
    # pairs at 64 px (48 KiB as float32 tensors) or ~3.5k at 224 px; the paper's millions stream from disk.
    preload_max_mb: int = 2048
    description: str = ""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ReactConfigError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.last_k_layers is not None and self.strategy != "gated-image":
            raise ReactConfigError(
                f"last_k_layers = {self.last_k_layers} adds gated blocks, which only the gated-image strategy "
                f"trains; strategy is {self.strategy!r}"
            )
        if self.last_k_layers is not None and (
            isinstance(self.last_k_layers, bool) or self.last_k_layers < 1
        ):
            raise ReactConfigError(
                f"last_k_layers must be a positive int or None, got {self.last_k_layers!r}"
            )
        if self.grad_checkpointing and self.strategy != "gated-image":
            raise ReactConfigError("grad_checkpointing applies to the gated blocks: use it with gated-image")
        if isinstance(self.micro_batch_size, bool) or self.micro_batch_size < 2:
            raise ReactConfigError(
                f"micro_batch_size must be >= 2 (a contrastive batch needs negatives), got {self.micro_batch_size}"
            )
        if not 0 < self.gamma <= 1:
            raise ReactConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if isinstance(self.preload_max_mb, bool) or self.preload_max_mb < 0:
            raise ReactConfigError(f"preload_max_mb must be >= 0, got {self.preload_max_mb!r}")

    def with_runtime(self, **overrides: Any) -> ReactTrainConfig:
        return replace(self, runtime=replace(self.runtime, **overrides))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def react_preset(name: str, strategy: str = "gated-image") -> ReactTrainConfig:
    """The named preset for ``strategy`` (learning rates differ between gated blocks and whole towers)."""
    if name not in PRESETS:
        raise ReactConfigError(f"unknown preset {name!r}; choose one of {PRESETS}")
    if strategy not in STRATEGIES:
        raise ReactConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    gated = strategy == "gated-image"
    if name == "tiny":
        return ReactTrainConfig(
            preset=name,
            strategy=strategy,
            micro_batch_size=4,
            augment=AugmentConfig.off(),
            # A clip threshold no gradient reaches: the loop then logs grad_norm, which the DDP test compares.
            runtime=RuntimeConfig(
                learning_rate=1e-2, max_steps=3, warmup_ratio=0.0, seed=0, max_grad_norm=1e6
            ),
            description="tests: a few updates of a random tiny CLIP",
        )
    if name == "synthworld":
        return ReactTrainConfig(
            preset=name,
            strategy=strategy,
            micro_batch_size=64,
            # No augmentation (docs/react_customization.md): a run with random crops (scale 0.6-1, and lr 1e-3
            # for 20 epochs) lost 2.4 points of species and 3.5 of shapes; SynthWorld's 64-px objects can be cut
            # away by a crop, and colour jitter / RandAugment would teach the tower to ignore colour, a task label.
            augment=AugmentConfig.off(),
            runtime=RuntimeConfig(
                learning_rate=3e-4 if gated else 3e-5,
                weight_decay=0.1,
                adam_betas=(0.9, 0.98),
                adam_eps=1e-6,
                epochs=10,
                warmup_ratio=0.1,
                max_grad_norm=1.0,
                checkpoint_every=50,
                seed=0,
            ),
            description="the embedded SynthWorld tiny CLIP on the explorer's species subset",
        )
    return ReactTrainConfig(
        preset=name,
        strategy=strategy,
        micro_batch_size=512,
        last_k_layers=6 if gated else None,
        grad_checkpointing=gated,
        runtime=RuntimeConfig(
            learning_rate=5e-4 if gated else 5e-5,
            weight_decay=0.1,
            adam_betas=(0.9, 0.98),
            adam_eps=1e-6,
            epochs=32,
            warmup_ratio=VIT_B_32_WARMUP_RATIO,
            max_grad_norm=None,
            checkpoint_every=1000,
            precision="auto",
            num_workers=8,
            seed=0,
        ),
        description="REACT's CLIP ViT-B/32 recipe: 8 GPUs x 512 = global batch 4096 (accelerate launch)",
    )
