"""Typed configuration of one LLaVA training stage, with presets.

A ``StageConfig`` is everything a stage decides: which stage (1 = feature alignment, 2 = instruction
tuning), the conversation template, sequence and batch sizes, the projector/AnyRes architecture used when a
model is assembled, and the ``RuntimeConfig`` (optimiser, schedule, checkpointing). Paths are not part of a
preset; the CLI supplies them.

Presets (``stage_preset(name, stage)``):

* ``tiny``: tests; a few updates of an in-process model in seconds.
* ``synthworld``: the embedded SynthWorld LLaVA-NeXT (tiny CLIP 64 px + tiny Llama); stage 1 + stage 2 fit
  about 30 minutes on 2 shared CPU cores (measured, docs/recipe.md).
* ``llava_1_5_7b``: haotian-liu/LLaVA ``scripts/v1_5/pretrain.sh`` / ``finetune.sh`` hyperparameters
  (reference llava.md §5). Global batch = micro batch x processes (8 GPUs); LLaVA-1.5 used ``pad`` images,
  this trainer always uses AnyRes (see docs/llava_trainer.md).
* ``llava_next_7b``: LLaVA-NeXT ``scripts/train/pretrain_clip.sh`` / ``direct_finetune_clip.sh``. The
  reference also unfreezes the vision tower at 2e-6 in stage 2; this trainer keeps it frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from trainer.runtime.config import RuntimeConfig
from vision_common.anyres.geometry import LLAVA_1_6_GRIDS
from vision_common.chat.templates import UnknownTemplateError, get_template

ProjectorType = Literal["linear", "mlp2x_gelu"]
PROJECTORS: tuple[str, ...] = ("linear", "mlp2x_gelu")
STAGES: tuple[int, ...] = (1, 2)
PRESETS: tuple[str, ...] = ("tiny", "synthworld", "llava_1_5_7b", "llava_next_7b")


class ConfigError(ValueError):
    """A configuration has an invalid or contradictory option; the message names the field."""


@dataclass(frozen=True)
class ArchitectureConfig:
    """How parts are assembled into a LLaVA-NeXT model (used only when no ``--init`` model is given).

    ``anyres_grids`` are candidate tile grids (cols, rows); each becomes a pinpoint of cols x rows vision
    tiles, so the same grids fit any tower size. ``((1, 1),)`` is the "base tile only" ablation.
    """

    projector: ProjectorType = "mlp2x_gelu"
    anyres_grids: tuple[tuple[int, int], ...] = LLAVA_1_6_GRIDS
    # CLIP hidden_states[-2] (llava.md §3 step 5).
    vision_feature_layer: int = -2
    # Images whose vision features standardise the projector's input at assembly (0 = off; see
    # ``assemble.standardize_projector_input``): a data-dependent init that keeps a fresh projector from
    # mapping every patch of a ViT with a large shared feature component to nearly the same LM token.
    standardize_images: int = 0

    def __post_init__(self) -> None:
        if self.projector not in PROJECTORS:
            raise ConfigError(f"architecture.projector must be one of {PROJECTORS}, got {self.projector!r}")
        grids = tuple(tuple(g) for g in self.anyres_grids)
        object.__setattr__(self, "anyres_grids", grids)
        if not grids or any(len(g) != 2 or min(g) < 1 for g in grids):
            raise ConfigError(f"architecture.anyres_grids must be (cols, rows) pairs >= 1, got {grids}")
        if len(set(grids)) != len(grids):
            raise ConfigError(f"architecture.anyres_grids lists a grid twice: {grids}")
        if self.standardize_images < 0:
            raise ConfigError(f"architecture.standardize_images must be >= 0, got {self.standardize_images}")
        if self.vision_feature_layer >= 0:
            raise ConfigError(
                "architecture.vision_feature_layer must index from the end (e.g. -2), "
                f"got {self.vision_feature_layer}"
            )


@dataclass(frozen=True)
class StageConfig:
    """One training stage.

    Stage 1 trains the projector and ``image_newline`` on captions with the ``plain`` template; stage 2
    trains projector, ``image_newline`` and the whole LLM on instructions. The vision tower is frozen
    (``requires_grad=False`` and eval mode) unless ``tune_vision`` (stage 2 only) trains it too, at
    ``vision_lr`` (LLaVA-NeXT's ``mm_vision_tower_lr``; None = the base rate). ``image_newline`` trains with the projector in both stages: it
    is the only learned piece of the AnyRes layout (a frozen random row separator carries no information),
    and it is created and stored with the multimodal glue, not with the LLM (docs/llava_trainer.md).
    """

    preset: str
    stage: int
    template: str
    # Samples longer than this many tokens (images expanded) are dropped and counted, never truncated.
    max_length: int
    micro_batch_size: int
    runtime: RuntimeConfig
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    group_by_length: bool = True
    # LLaVA's --mm_projector_lr: a separate projector learning rate in stage 2 (None = the base rate).
    projector_lr: float | None = None
    tune_vision: bool = False
    vision_lr: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be 1 or 2, got {self.stage!r}")
        try:
            get_template(self.template)
        except UnknownTemplateError as exc:
            raise ConfigError(f"template: {exc}") from None
        if self.stage == 1 and self.template != "plain":
            raise ConfigError(
                f"stage 1 aligns features on captions with the 'plain' template, got template={self.template!r}"
            )
        if self.stage == 2 and self.template == "plain":
            raise ConfigError("stage 2 is instruction tuning; the 'plain' template is for stage 1 only")
        if self.tune_vision and self.stage == 1:
            raise ConfigError("tune_vision=True contradicts stage 1: stage 1 trains only the projector")
        if self.vision_lr is not None:
            if not self.tune_vision:
                raise ConfigError("vision_lr is set but tune_vision is False: the vision tower is frozen")
            if not self.vision_lr > 0:
                raise ConfigError(f"vision_lr must be > 0 (or None), got {self.vision_lr}")
        if self.max_length < 16:
            raise ConfigError(f"max_length must be >= 16 tokens, got {self.max_length}")
        if self.micro_batch_size < 1:
            raise ConfigError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.projector_lr is not None:
            if not self.projector_lr > 0:
                raise ConfigError(f"projector_lr must be > 0 (or None), got {self.projector_lr}")
            if self.stage == 1:
                raise ConfigError(
                    "projector_lr is a stage-2 option (stage 1 trains only the projector: set runtime.learning_rate)"
                )
        if not isinstance(self.runtime, RuntimeConfig):
            raise ConfigError(f"runtime must be a RuntimeConfig, got {type(self.runtime).__name__}")

    @property
    def projector_lr_scale(self) -> float:
        return 1.0 if self.projector_lr is None else self.projector_lr / self.runtime.learning_rate

    @property
    def vision_lr_scale(self) -> float:
        return 1.0 if self.vision_lr is None else self.vision_lr / self.runtime.learning_rate

    def with_runtime(self, **changes: Any) -> StageConfig:
        return replace(self, runtime=replace(self.runtime, **changes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "stage": self.stage,
            "template": self.template,
            "max_length": self.max_length,
            "micro_batch_size": self.micro_batch_size,
            "group_by_length": self.group_by_length,
            "projector_lr": self.projector_lr,
            "tune_vision": self.tune_vision,
            "vision_lr": self.vision_lr,
            "architecture": {
                "projector": self.architecture.projector,
                "anyres_grids": [list(g) for g in self.architecture.anyres_grids],
                "vision_feature_layer": self.architecture.vision_feature_layer,
                "standardize_images": self.architecture.standardize_images,
            },
            "runtime": self.runtime.to_dict(),
        }


def _tiny(stage: int) -> StageConfig:
    """Tests: 6 updates of 2 samples, checkpoint every 2; runs in seconds with the tiny fixtures."""
    runtime = RuntimeConfig(
        learning_rate=1e-3 if stage == 1 else 5e-4,
        warmup_ratio=0.0,
        max_steps=6,
        checkpoint_every=2,
        keep_checkpoints=3,
        max_grad_norm=1.0,
    )
    return StageConfig(
        preset="tiny",
        stage=stage,
        template="plain" if stage == 1 else "vicuna_v1",
        max_length=256 if stage == 1 else 640,
        micro_batch_size=2,
        runtime=runtime,
        architecture=ArchitectureConfig(standardize_images=2),
        description="test preset (tiny in-process models)",
    )


def _synthworld(stage: int) -> StageConfig:
    """The embedded model, sized to ~30 min on 2 shared CPU cores (docs/recipe.md has the measured runs):
    stage 1 100 x 16 captions at 1e-3 from a standardised projector input; stage 2 1000 x 8 at 1e-3."""
    if stage == 1:
        runtime = RuntimeConfig(learning_rate=1e-3, warmup_ratio=0.03, max_steps=100, checkpoint_every=50)
        return StageConfig(
            "synthworld",
            1,
            "plain",
            512,
            16,
            runtime,
            architecture=ArchitectureConfig(standardize_images=64),
            description=_synthworld.__doc__ or "",
        )
    runtime = RuntimeConfig(
        learning_rate=1e-3, warmup_ratio=0.03, weight_decay=0.0, max_steps=1000, checkpoint_every=250
    )
    return StageConfig("synthworld", 2, "vicuna_v1", 1024, 8, runtime, description=_synthworld.__doc__ or "")


# Settings both reference recipes share (one epoch, cosine, 3% warmup, no weight decay; llava.md §5).
_REFERENCE_RUNTIME = MappingProxyType(
    {"weight_decay": 0.0, "warmup_ratio": 0.03, "schedule": "cosine", "epochs": 1.0, "precision": "auto"}
)


def _llava_1_5_7b(stage: int) -> StageConfig:
    """haotian-liu/LLaVA scripts/v1_5: pretrain 1e-3 x 256 (32 x 8 GPUs), finetune 2e-5 x 128 (16 x 8)."""
    if stage == 1:
        runtime = RuntimeConfig(learning_rate=1e-3, checkpoint_every=500, **_REFERENCE_RUNTIME)
        return StageConfig(
            "llava_1_5_7b", 1, "plain", 2048, 32, runtime, description=_llava_1_5_7b.__doc__ or ""
        )
    runtime = RuntimeConfig(learning_rate=2e-5, checkpoint_every=500, **_REFERENCE_RUNTIME)
    return StageConfig(
        "llava_1_5_7b", 2, "vicuna_v1", 2048, 16, runtime, description=_llava_1_5_7b.__doc__ or ""
    )


def _llava_next_7b(stage: int) -> StageConfig:
    """LLaVA-NeXT scripts/train: pretrain_clip 1e-3, 16/device, len 8192; direct_finetune_clip 1e-5, 4/device,
    len 32768 (its vision lr 2e-6 is not used: the tower stays frozen). Qwen2 chat -> chatml_direct here."""
    if stage == 1:
        runtime = RuntimeConfig(learning_rate=1e-3, checkpoint_every=500, **_REFERENCE_RUNTIME)
        return StageConfig(
            "llava_next_7b", 1, "plain", 8192, 16, runtime, description=_llava_next_7b.__doc__ or ""
        )
    runtime = RuntimeConfig(learning_rate=1e-5, checkpoint_every=500, **_REFERENCE_RUNTIME)
    return StageConfig(
        "llava_next_7b", 2, "chatml_direct", 32768, 4, runtime, description=_llava_next_7b.__doc__ or ""
    )


_PRESETS = MappingProxyType(
    {
        "tiny": _tiny,
        "synthworld": _synthworld,
        "llava_1_5_7b": _llava_1_5_7b,
        "llava_next_7b": _llava_next_7b,
    }
)


def stage_preset(name: str, stage: int) -> StageConfig:
    """The preset ``name`` for ``stage`` (1 or 2)."""
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(_PRESETS)}")
    if stage not in STAGES:
        raise ConfigError(f"stage must be 1 or 2, got {stage!r}")
    return _PRESETS[name](stage)
