"""State dicts of customized models: the REACT fork's checkpoints and plain CLIP checkpoints.

The fork saves ``{"state_dict": ...}`` with DDP's ``module.`` prefix (``training/main.py``); its released
``react-vl/react-in1k`` files hold the same names without it. Both load here. A plain CLIP checkpoint loads
into a gated model as the fork's ``--resume`` does: the gated blocks are the only missing keys and keep their
zero-gate init; anything else missing or unexpected is an error naming the keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from react_explorer.customized.gated_blocks import ReactModelError, is_gated_parameter

DDP_PREFIX = "module."


def normalize_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}`` and strip a ``module.`` prefix carried by every key."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise ReactModelError("checkpoint holds no state dict (expected a mapping of tensors)")
    if all(key.startswith(DDP_PREFIX) for key in state):
        state = {key[len(DDP_PREFIX) :]: value for key, value in state.items()}
    bad = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise ReactModelError(f"checkpoint entries are not tensors: {bad[:5]}")
    return dict(state)


def read_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file or a torch pickle read with ``weights_only=True``; normalised."""
    from safetensors.torch import load_file  # safetensors only where a file is read

    path = Path(path)
    if not path.is_file():
        raise ReactModelError(f"checkpoint file {path} not found")
    try:
        raw = (
            load_file(str(path))
            if path.suffix == ".safetensors"
            else torch.load(path, map_location="cpu", weights_only=True)
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise ReactModelError(f"cannot read checkpoint {path}: {exc}") from exc
    return normalize_state_dict(raw)


def load_customized_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Load fork- or open_clip-named weights into ``model``; returns the gated keys the state did not hold.

    Missing gated-block keys (a plain CLIP checkpoint) are allowed and keep their zero-gate init; any other
    missing or unexpected key, or a shape mismatch, raises naming it.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    missing_base = [key for key in missing if not is_gated_parameter(key)]
    if missing_base or unexpected:
        hint = ""
        if any(is_gated_parameter(key) for key in unexpected):
            hint = " (the checkpoint has gated blocks: build the model with the same react_cfg.last_k_layers)"
        raise ReactModelError(
            f"{source}: state dict does not fit the model: missing {missing_base[:5]}, unexpected "
            f"{unexpected[:5]}{hint}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ReactModelError(
                f"{source}: {key} has shape {tuple(value.shape)}, the model has {tuple(own[key].shape)}"
            )
    model.load_state_dict(dict(state), strict=False)
    return missing
