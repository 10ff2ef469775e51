"""What trains under each REACT strategy, the training mode of frozen parts, and parameter counts.

Parameters of an open_clip ``CLIP`` fall into four parts by name: ``logit_scale`` (and ``logit_bias``), the
gated blocks (``...gated_attn_block...``), the rest of the image tower (``visual.*``) and the text tower
(everything else: ``transformer``, ``token_embedding``, ``positional_embedding``, ``ln_final``,
``text_projection``; ``text.*`` in open_clip's ``CustomTextCLIP``). ``logit_scale`` trains in every strategy,
as in the fork.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from react_explorer.customized.gated_blocks import is_gated_parameter
from trainer.react.config import STRATEGIES, ReactConfigError
from trainer.runtime.schedule import ParamGroup

LOGIT_NAMES = ("logit_scale", "logit_bias")
# Which parts each strategy trains (besides logit_scale).
TRAINED_PARTS: dict[str, tuple[str, ...]] = {
    "gated-image": ("gated",),
    "locked-text": ("image",),
    "locked-image": ("text",),
    "full": ("image", "text"),
}


def part_of(name: str) -> str:
    """``logit``, ``gated``, ``image`` or ``text`` for a parameter name of an open_clip CLIP."""
    if name in LOGIT_NAMES:
        return "logit"
    if is_gated_parameter(name):
        return "gated"
    if name.startswith("visual."):
        return "image"
    return "text"


def unwrap(model: nn.Module) -> nn.Module:
    """The CLIP inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def configure_strategy(model: nn.Module, strategy: str) -> list[ParamGroup]:
    """Set ``requires_grad`` for ``strategy`` and return the optimiser's parameter group."""
    if strategy not in STRATEGIES:
        raise ReactConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    parts = {*TRAINED_PARTS[strategy], "logit"}
    if strategy == "gated-image" and not any(part_of(n) == "gated" for n, _ in model.named_parameters()):
        raise ReactConfigError(
            "strategy gated-image needs gated blocks in the model (react_cfg.last_k_layers)"
        )
    if strategy != "gated-image" and any(part_of(n) == "gated" for n, _ in model.named_parameters()):
        raise ReactConfigError(
            f"strategy {strategy!r} on a model with gated blocks: start from a plain CLIP, or use gated-image"
        )
    trained = []
    for name, param in model.named_parameters():
        param.requires_grad_(part_of(name) in parts)
        if param.requires_grad:
            trained.append(param)
    return [ParamGroup(strategy, tuple(trained))]


def train_mode_for(strategy: str) -> Callable[[nn.Module], None]:
    """Train mode for what trains, eval mode for frozen towers (gated blocks train inside a frozen tower)."""
    image_frozen = strategy in ("gated-image", "locked-image")

    def set_train_mode(model: nn.Module) -> None:
        clip = unwrap(model)
        model.train()
        if image_frozen:
            clip.visual.eval()
            for module in clip.visual.modules():
                if hasattr(module, "alpha_attn"):
                    module.train()
        if strategy in ("gated-image", "locked-text"):
            for name, module in clip.named_children():
                if name != "visual":
                    module.eval()

    return set_train_mode


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per part and how many train now."""
    counts = {"logit": 0, "gated": 0, "image": 0, "text": 0, "trainable": 0, "total": 0}
    for name, param in model.named_parameters():
        counts[part_of(name)] += param.numel()
        counts["total"] += param.numel()
        counts["trainable"] += param.numel() if param.requires_grad else 0
    return counts


def resolve_strategy(
    strategy: str | None, *, lock_text: bool, lock_image: bool, lock_image_unlock_gated: bool
) -> str:
    """``--strategy`` or the fork's flags (``--lock-text``, ``--lock-image``, ``--lock-image-unlock-gated``).

    The flags map to a strategy (both gated flags: gated-image; ``--lock-text``: locked-text; ``--lock-image``:
    locked-image; none: full); a contradiction between flags, or between flags and ``--strategy``, is an error.
    """
    if lock_image and lock_image_unlock_gated:
        raise ReactConfigError("--lock-image freezes the gated blocks that --lock-image-unlock-gated trains")
    if lock_image and lock_text:
        raise ReactConfigError("--lock-image with --lock-text leaves only logit_scale to train")
    if lock_image_unlock_gated and not lock_text:
        raise ReactConfigError("--lock-image-unlock-gated needs --lock-text (REACT's gated-image tuning)")
    flags = lock_text or lock_image or lock_image_unlock_gated
    from_flags = (
        "gated-image" if lock_image_unlock_gated else "locked-text" if lock_text else "locked-image"
        if lock_image else "full"
    )  # fmt: skip
    if strategy is None:
        return from_flags if flags else "gated-image"
    if flags and strategy != from_flags:
        raise ReactConfigError(f"--strategy {strategy} contradicts the lock flags, which mean {from_flags}")
    return strategy


def changed_parameters(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    """Names whose values differ from ``before`` (bit-exact comparison)."""
    now = dict(model.named_parameters())
    return {name for name, value in before.items() if not torch.equal(value, now[name].detach())}
