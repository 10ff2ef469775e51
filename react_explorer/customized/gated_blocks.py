"""Gated self-attention dense blocks (REACT's "gated-image" tuning) on any open_clip ViT.

One ``GatedResidualAttentionBlock`` runs in front of each of the last K blocks of the vision tower:

    x <- x + tanh(alpha_attn)  * Attn(LN_1(x))
    x <- x + tanh(alpha_dense) * MLP(LN_2(x))

with scalar gates initialised to 0, so the customized model equals the base model at step 0. Width, heads,
activation, norm and LayerScale follow the host block; the MLP ratio is 4 (the fork never passes the host's).

Parameter names follow the public REACT fork of open_clip 2.15 (``microsoft/react``,
``react_customization/src/open_clip/transformer.py``): the block is a child called ``gated_attn_block`` of the
host ``ResidualAttentionBlock``, with ``ln_1``, ``attn`` (``nn.MultiheadAttention``: ``in_proj_weight``,
``in_proj_bias``, ``out_proj``), ``ls_1``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``, ``ls_2``, ``alpha_attn`` and
``alpha_dense``. So ``visual.transformer.resblocks.11.gated_attn_block.alpha_attn`` in a fork checkpoint is the
same tensor here. Open_clip 3 runs its transformers batch-first; the block's attention takes the host's
``batch_first``, so the fork's sequence-first weights need no conversion (MultiheadAttention's weights do not
depend on the layout).

The host block is left untouched (same class, same weights); the gated block is attached as a child and run by
a forward pre-hook on the host, so every path that calls the host (``forward``, ``forward_intermediates``,
open_clip's own gradient checkpointing) goes through it.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

GATED_BLOCK_NAME = "gated_attn_block"
# The fork's defaults (react_ViT-*.json): 6 gated blocks for 12- and 24-layer towers, 12 for bigG's 48.
FORK_LAST_K = {12: 6, 24: 6, 48: 12}


class ReactModelError(ValueError):
    """A base model or REACT setting cannot make a customized model; the message names the field."""


@dataclass(frozen=True)
class ReactModelConfig:
    """Where the gated blocks go and how they are built (stored as ``react_cfg`` in the model directory)."""

    last_k_layers: int
    mlp_ratio: float = 4.0
    # Recompute each gated block in the backward pass (the fork always does while training).
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.last_k_layers, bool) or not isinstance(self.last_k_layers, int):
            raise ReactModelError(f"react_cfg.last_k_layers must be an int, got {self.last_k_layers!r}")
        if self.last_k_layers < 1:
            raise ReactModelError(f"react_cfg.last_k_layers must be >= 1, got {self.last_k_layers}")
        if not self.mlp_ratio > 0:
            raise ReactModelError(f"react_cfg.mlp_ratio must be > 0, got {self.mlp_ratio}")

    def to_dict(self) -> dict[str, Any]:
        """The fork's ``{"enabled": true, "last_k_layers": K}`` plus this block's own settings."""
        return {"enabled": True, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReactModelConfig:
        if not isinstance(data, dict):
            raise ReactModelError(f"react_cfg must be an object, got {type(data).__name__}")
        if data.get("enabled", True) is not True:
            raise ReactModelError("react_cfg.enabled is not true: this is not a gated-image model")
        unknown = sorted(set(data) - {"enabled", "last_k_layers", "mlp_ratio", "grad_checkpointing"})
        if unknown:
            raise ReactModelError(f"react_cfg: unknown fields {unknown}")
        if "last_k_layers" not in data:
            raise ReactModelError("react_cfg.last_k_layers is missing")
        return cls(
            last_k_layers=data["last_k_layers"],
            mlp_ratio=float(data.get("mlp_ratio", 4.0)),
            grad_checkpointing=bool(data.get("grad_checkpointing", False)),
        )


def default_last_k(depth: int) -> int:
    """The fork's K for its towers; half the depth (at least 1) for any other depth (e.g. tiny towers)."""
    return FORK_LAST_K.get(depth, max(1, depth // 2))


class GatedResidualAttentionBlock(nn.Module):
    """Self-attention + MLP residual block whose two branches are scaled by tanh of a zero-initialised gate."""

    def __init__(
        self,
        width: int,
        heads: int,
        *,
        mlp_ratio: float,
        act_layer: nn.Module,
        norm_layer: nn.Module,
        layer_scale: nn.Module | None,
        batch_first: bool,
    ) -> None:
        super().__init__()
        self.ln_1 = _fresh(norm_layer)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=batch_first)
        self.ls_1 = _fresh(layer_scale) if layer_scale is not None else nn.Identity()
        self.ln_2 = _fresh(norm_layer)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, hidden)),
                    ("gelu", copy.deepcopy(act_layer)),
                    ("c_proj", nn.Linear(hidden, width)),
                ]
            )
        )
        self.ls_2 = _fresh(layer_scale) if layer_scale is not None else nn.Identity()
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        attended = self.attn(h, h, h, need_weights=False)[0]
        x = x + self.alpha_attn.tanh() * self.ls_1(attended)
        return x + self.alpha_dense.tanh() * self.ls_2(self.mlp(self.ln_2(x)))


def _fresh(module: nn.Module) -> nn.Module:
    """A copy of a norm / LayerScale module with freshly initialised parameters (ones, zeros, LayerScale init)."""
    clone = copy.deepcopy(module)
    if hasattr(clone, "reset_parameters"):
        clone.reset_parameters()
    return clone


def _run_gated_block(host: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook of a host block: replace its input ``q_x`` by the gated block's output."""
    gated = getattr(host, GATED_BLOCK_NAME)
    names = ("q_x", "k_x", "v_x")
    values = {name: (args[i] if i < len(args) else kwargs.get(name)) for i, name in enumerate(names)}
    if values["k_x"] is not None or values["v_x"] is not None:
        raise ReactModelError("gated blocks support self-attention only (the host was called with k_x/v_x)")
    x = values["q_x"]
    if gated.grad_checkpointing and torch.is_grad_enabled():
        x = checkpoint(gated, x, use_reentrant=False)
    else:
        x = gated(x)
    if args:
        return (x, *args[1:]), kwargs
    return args, {**kwargs, "q_x": x}


def vision_blocks(model: nn.Module) -> nn.ModuleList:
    """The vision tower's ``resblocks`` of an open_clip CLIP, or an error naming what the tower is instead."""
    visual = getattr(model, "visual", None)
    if visual is None:
        raise ReactModelError(
            f"base model {type(model).__name__} has no 'visual' tower (not an open_clip CLIP)"
        )
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise ReactModelError(
            f"base model's vision tower is {type(visual).__name__}, not a vision transformer with "
            "transformer.resblocks: gated blocks need an open_clip ViT"
        )
    return blocks


def gated_positions(depth: int, last_k_layers: int) -> list[int]:
    """Block indices that get a gated block: the fork's ``layer_idx + last_k_layers >= layers``."""
    if last_k_layers > depth:
        raise ReactModelError(
            f"react_cfg.last_k_layers = {last_k_layers} is larger than the vision tower's depth {depth}"
        )
    return [index for index in range(depth) if index + last_k_layers >= depth]


def attach_gated_blocks(
    model: nn.Module, cfg: ReactModelConfig, *, ls_init_value: float | None = None
) -> list[int]:
    """Add a zero-gated block in front of each of the last ``cfg.last_k_layers`` vision blocks (in place).

    Returns the block indices. ``ls_init_value``: LayerScale init of the gated blocks when the host blocks use
    LayerScale (the base config's ``vision_cfg.ls_init_value``). New parameters are created on the host's
    device and dtype.
    """
    blocks = vision_blocks(model)
    positions = gated_positions(len(blocks), cfg.last_k_layers)
    for index in positions:
        host = blocks[index]
        if hasattr(host, GATED_BLOCK_NAME):
            raise ReactModelError(f"vision block {index} already has a {GATED_BLOCK_NAME}")
        gated = _gated_block_for(host, cfg, ls_init_value, index)
        reference = host.ln_1.weight
        gated.to(device=reference.device, dtype=reference.dtype)
        gated.grad_checkpointing = cfg.grad_checkpointing
        gated.train(host.training)  # a new module starts in train mode; follow the host's mode
        host.add_module(GATED_BLOCK_NAME, gated)
        host.register_forward_pre_hook(_run_gated_block, with_kwargs=True)
    return positions


def _gated_block_for(
    host: nn.Module, cfg: ReactModelConfig, ls_init_value: float | None, index: int
) -> GatedResidualAttentionBlock:
    needed = ("ln_1", "attn", "ln_2", "mlp", "ls_1")
    missing = [name for name in needed if not hasattr(host, name)]
    if missing or not isinstance(host.attn, nn.MultiheadAttention):
        raise ReactModelError(
            f"vision block {index} ({type(host).__name__}) is not an open_clip ResidualAttentionBlock with "
            f"nn.MultiheadAttention (missing {missing or ['attn: nn.MultiheadAttention']})"
        )
    layer_scale = None
    if not isinstance(host.ls_1, nn.Identity):
        if ls_init_value is None:
            raise ReactModelError(
                f"vision block {index} uses LayerScale; pass ls_init_value (vision_cfg.ls_init_value)"
            )
        layer_scale = copy.deepcopy(host.ls_1)
        with torch.no_grad():
            layer_scale.gamma.fill_(ls_init_value)
    width = host.ln_1.normalized_shape[0]
    return GatedResidualAttentionBlock(
        width,
        host.attn.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        act_layer=host.mlp.gelu,
        norm_layer=host.ln_1,
        layer_scale=layer_scale,
        batch_first=host.attn.batch_first,
    )


def is_gated_parameter(name: str) -> bool:
    """True for a parameter of a gated block (what ``gated-image`` trains besides ``logit_scale``)."""
    return f".{GATED_BLOCK_NAME}." in f".{name}"


def gated_parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if is_gated_parameter(name))
