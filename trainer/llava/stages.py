"""What trains in each stage, the per-stage training mode, and the loss of one micro-batch.

Stage 1 (feature alignment): projector + ``image_newline``. Stage 2 (instruction tuning): projector +
``image_newline`` + the whole language model (embeddings, blocks, norm, head), and with ``tune_vision`` the
vision tower at its own learning rate (LLaVA-NeXT's recipe). Otherwise the tower is frozen:
``requires_grad=False`` and eval mode (so dropout-style layers behave as at inference). With the
``linear`` projector, linear_2 is a fixed identity (see ``assemble``) and stays frozen too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from transformers import LlavaNextForConditionalGeneration

from trainer.llava.assemble import is_linear_projector
from trainer.llava.config import StageConfig
from trainer.runtime.loop import StepLoss
from trainer.runtime.schedule import ParamGroup

PROJECTOR_GROUP = "projector"
LANGUAGE_GROUP = "language_model"
VISION_GROUP = "vision_tower"


def unwrap(model: torch.nn.Module) -> LlavaNextForConditionalGeneration:
    """The LLaVA model inside a DDP (or similar) wrapper."""
    inner = getattr(model, "module", model)
    if not isinstance(inner, LlavaNextForConditionalGeneration):
        raise TypeError(f"expected LlavaNextForConditionalGeneration, got {type(inner).__name__}")
    return inner


def projector_parameters(model: LlavaNextForConditionalGeneration) -> Iterator[torch.nn.Parameter]:
    projector = model.model.multi_modal_projector
    yield from projector.linear_1.parameters()
    if not is_linear_projector(model):
        yield from projector.linear_2.parameters()
    yield model.model.image_newline


def language_parameters(model: LlavaNextForConditionalGeneration) -> Iterator[torch.nn.Parameter]:
    yield from model.model.language_model.parameters()
    if model.lm_head.weight is not model.model.language_model.get_input_embeddings().weight:
        yield from model.lm_head.parameters()


def configure_stage(model: LlavaNextForConditionalGeneration, cfg: StageConfig) -> list[ParamGroup]:
    """Set ``requires_grad`` for ``cfg.stage`` and return the optimiser's parameter groups."""
    model.requires_grad_(False)
    model.model.vision_tower.eval()
    projector = tuple(projector_parameters(model))
    groups = [ParamGroup(PROJECTOR_GROUP, projector, cfg.projector_lr_scale)]
    if cfg.stage == 2:
        groups.append(ParamGroup(LANGUAGE_GROUP, tuple(language_parameters(model))))
    if cfg.tune_vision:
        tower = tuple(model.model.vision_tower.parameters())
        groups.append(ParamGroup(VISION_GROUP, tower, cfg.vision_lr_scale))
    for group in groups:
        for param in group.params:
            param.requires_grad_(True)
    return groups


def set_train_mode(model: torch.nn.Module) -> None:
    """Train mode for everything except a frozen vision tower (one whose parameters do not train)."""
    model.train()
    tower = unwrap(model).model.vision_tower
    if not any(p.requires_grad for p in tower.parameters()):
        tower.eval()


def compute_loss(model: torch.nn.Module, batch: dict[str, Any]) -> StepLoss:
    """transformers' causal-LM loss (mean over supervised tokens of the micro-batch, as LLaVA)."""
    output = model(**batch, use_cache=False)
    return StepLoss(
        loss=output.loss, samples=int(batch["input_ids"].shape[0]), tokens=int(batch["attention_mask"].sum())
    )


def parameter_counts(model: LlavaNextForConditionalGeneration) -> dict[str, int]:
    """Parameters per part and how many train now (tied weights counted once)."""
    parts = {
        "vision_tower": model.model.vision_tower,
        "projector": model.model.multi_modal_projector,
        "language_model": model.model.language_model,
    }
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}
    counts["image_newline"] = model.model.image_newline.numel()
    counts["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
