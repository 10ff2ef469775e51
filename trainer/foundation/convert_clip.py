"""Convert an open_clip ViT vision tower into a transformers ``CLIPVisionModel`` directory (a LLaVA vision tower).

    python -m trainer.foundation.convert_clip --open-clip DIR --out DIR [--with-projection]

Writes ``config.json`` (``CLIPVisionConfig``), ``model.safetensors`` and ``preprocessor_config.json``
(``CLIPImageProcessor`` doing what open_clip's val transform does: the same resize mode, image size, mean/std
and interpolation), so ``CLIPVisionModel.from_pretrained(out)`` and ``CLIPImageProcessor.from_pretrained(out)`` work
offline. With ``--with-projection`` the model is a ``CLIPVisionModelWithProjection`` whose ``image_embeds`` equal
open_clip's ``encode_image`` (``CLIPVisionModel`` still loads it, ignoring ``visual_projection``).

Weight mapping (open_clip ``VisionTransformer`` -> transformers ``CLIPVisionTransformer``):
``conv1`` -> patch embedding, ``class_embedding``/``positional_embedding`` -> embeddings, ``ln_pre`` ->
``pre_layrnorm``, fused ``attn.in_proj_{weight,bias}`` split into q/k/v, ``ln_1/ln_2`` -> ``layer_norm1/2``,
``mlp.c_fc/c_proj`` -> ``mlp.fc1/fc2``, ``ln_post`` -> ``post_layernorm``, ``proj`` (x @ proj) ->
``visual_projection.weight`` = proj.T. The activation must match: open_clip uses exact GELU unless the config sets
``quick_gelu`` (transformers' CLIP default is ``quick_gelu``, so it is always written explicitly).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from vision_common.atomic import atomic_directory
from vision_common.clip_constants import CLIP_MEAN, CLIP_STD
from vision_common.open_clip_dir import OPEN_CLIP_WEIGHTS_NAME, read_open_clip_config

VISUAL_PREFIX = "visual."
PIL_RESAMPLE = {"bicubic": 3, "bilinear": 2, "nearest": 0}
# Vision options of open_clip that CLIPVisionTransformer has no equivalent for (value that *is* supported).
UNSUPPORTED_VISION_OPTIONS = {
    "timm_model_name": None,
    "attentional_pool": False,
    "ls_init_value": None,
    "no_ln_pre": False,
    "final_ln_after_pool": False,
    "pool_type": "tok",
    "pos_embed_type": "learnable",
    "block_type": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
    "act_kwargs": None,
    "norm_kwargs": None,
}


class ClipConversionError(ValueError):
    """The open_clip model cannot be expressed as a transformers CLIPVisionModel; the message says why."""


def hf_hidden_act(model_cfg: dict[str, Any]) -> str:
    """open_clip builds ``QuickGELU`` only when ``quick_gelu`` is true, otherwise exact ``nn.GELU``."""
    return "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"


def hf_vision_config_dict(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """``CLIPVisionConfig`` fields for an open_clip model config; raises on options transformers lacks."""
    vision = model_cfg["vision_cfg"]
    for option, supported in UNSUPPORTED_VISION_OPTIONS.items():
        if vision.get(option, supported) != supported:
            raise ClipConversionError(
                f"vision_cfg.{option}={vision[option]!r} has no CLIPVisionModel equivalent (supported: {supported!r})"
            )
    if not isinstance(vision.get("layers"), int):
        raise ClipConversionError(f"vision_cfg.layers must be an int (a ViT), got {vision.get('layers')!r}")
    image_size, patch_size = vision.get("image_size", 224), vision.get("patch_size", 16)
    if not isinstance(image_size, int) or not isinstance(patch_size, int):
        raise ClipConversionError("only square image_size/patch_size (ints) are supported")
    width, head_width = vision.get("width", 768), vision.get("head_width", 64)
    if width % head_width:
        raise ClipConversionError(f"vision_cfg.width {width} is not a multiple of head_width {head_width}")
    return {
        "hidden_size": width,
        "intermediate_size": int(width * vision.get("mlp_ratio", 4.0)),
        "projection_dim": model_cfg["embed_dim"],
        "num_hidden_layers": vision["layers"],
        "num_attention_heads": width // head_width,
        "num_channels": 3,
        "image_size": image_size,
        "patch_size": patch_size,
        "hidden_act": hf_hidden_act(model_cfg),
        "layer_norm_eps": 1e-5,  # open_clip's LayerNorm default
    }


def convert_visual_state_dict(
    state: dict[str, torch.Tensor], num_layers: int, *, with_projection: bool
) -> dict[str, torch.Tensor]:
    """Map ``visual.*`` tensors of an open_clip CLIP state dict to ``CLIPVisionModel`` names.

    The returned names are those of ``CLIPVisionModel`` (``embeddings.*``, ``encoder.layers.*``, ...); with
    ``with_projection`` they are prefixed ``vision_model.`` and ``visual_projection.weight`` is added, the names of
    ``CLIPVisionModelWithProjection``. Every ``visual.*`` tensor must be used exactly once.
    """
    visual = {k[len(VISUAL_PREFIX) :]: v for k, v in state.items() if k.startswith(VISUAL_PREFIX)}
    if not visual:
        raise ClipConversionError("the state dict has no 'visual.*' tensors")
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        if name not in visual:
            raise ClipConversionError(f"open_clip weights lack 'visual.{name}'")
        used.add(name)
        return visual[name].detach().clone()

    out = {
        "embeddings.class_embedding": take("class_embedding"),
        "embeddings.patch_embedding.weight": take("conv1.weight"),
        "embeddings.position_embedding.weight": take("positional_embedding"),
        "pre_layrnorm.weight": take("ln_pre.weight"),
        "pre_layrnorm.bias": take("ln_pre.bias"),
        "post_layernorm.weight": take("ln_post.weight"),
        "post_layernorm.bias": take("ln_post.bias"),
    }
    for i in range(num_layers):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        # nn.MultiheadAttention stores q, k, v stacked along dim 0 of in_proj_{weight,bias}.
        for suffix in ("weight", "bias"):
            q, k, v = take(f"{src}attn.in_proj_{suffix}").chunk(3, dim=0)
            out[f"{dst}self_attn.q_proj.{suffix}"] = q.contiguous()
            out[f"{dst}self_attn.k_proj.{suffix}"] = k.contiguous()
            out[f"{dst}self_attn.v_proj.{suffix}"] = v.contiguous()
            out[f"{dst}self_attn.out_proj.{suffix}"] = take(f"{src}attn.out_proj.{suffix}")
            out[f"{dst}layer_norm1.{suffix}"] = take(f"{src}ln_1.{suffix}")
            out[f"{dst}layer_norm2.{suffix}"] = take(f"{src}ln_2.{suffix}")
            out[f"{dst}mlp.fc1.{suffix}"] = take(f"{src}mlp.c_fc.{suffix}")
            out[f"{dst}mlp.fc2.{suffix}"] = take(f"{src}mlp.c_proj.{suffix}")
    projection = take("proj")  # [width, embed_dim]; open_clip computes x @ proj
    leftover = sorted(set(visual) - used)
    if leftover:
        raise ClipConversionError(
            f"open_clip vision weights not representable in CLIPVisionModel: {leftover[:8]}"
        )
    if not with_projection:
        return out
    out = {f"vision_model.{k}": v for k, v in out.items()}
    out["visual_projection.weight"] = projection.T.contiguous()  # nn.Linear stores [out, in]
    return out


def image_processor_kwargs(preprocess_cfg: dict[str, Any], image_size: int) -> dict[str, Any]:
    """``CLIPImageProcessor`` settings equal to open_clip's val transform.

    ``shortest``: resize the short side, centre crop. ``squash``: resize straight to the square, no crop.
    """
    resize_mode = preprocess_cfg.get("resize_mode", "shortest")
    size = preprocess_cfg.get("size", image_size)
    if size != image_size:
        raise ClipConversionError(
            f"preprocess_cfg.size {size} differs from vision_cfg.image_size {image_size}"
        )
    interpolation = preprocess_cfg.get("interpolation", "bicubic")
    if interpolation not in PIL_RESAMPLE:
        raise ClipConversionError(
            f"preprocess_cfg.interpolation {interpolation!r} not in {sorted(PIL_RESAMPLE)}"
        )
    square = {"height": image_size, "width": image_size}
    if resize_mode == "shortest":
        geometry = {"size": {"shortest_edge": image_size}, "do_center_crop": True, "crop_size": square}
    elif resize_mode == "squash":
        geometry = {"size": square, "do_center_crop": False, "crop_size": square}
    else:
        raise ClipConversionError(
            f"preprocess_cfg.resize_mode {resize_mode!r} has no CLIPImageProcessor equivalent"
        )
    return {
        "do_resize": True,
        "resample": PIL_RESAMPLE[interpolation],
        **geometry,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(preprocess_cfg.get("mean", CLIP_MEAN)),
        "image_std": list(preprocess_cfg.get("std", CLIP_STD)),
        "do_convert_rgb": True,
    }


def convert_open_clip_dir(
    open_clip_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, with_projection: bool = False
) -> Path:
    """Convert a saved open_clip ``local-dir:`` model into a transformers vision-tower directory (atomically)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
    )

    source = Path(open_clip_dir)
    config = read_open_clip_config(source)
    model_cfg = config["model_cfg"]
    weights = source / OPEN_CLIP_WEIGHTS_NAME
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ClipConversionError(f"cannot read {weights}: {exc}") from exc
    vision_config = CLIPVisionConfig(**hf_vision_config_dict(model_cfg))
    model_class = CLIPVisionModelWithProjection if with_projection else CLIPVisionModel
    model = model_class(vision_config)
    hf_state = convert_visual_state_dict(
        state, vision_config.num_hidden_layers, with_projection=with_projection
    )
    try:
        model.load_state_dict(hf_state, strict=True)
    except RuntimeError as exc:
        raise ClipConversionError(
            f"{weights}: converted shapes do not fit {model_class.__name__}: {exc}"
        ) from exc
    processor = CLIPImageProcessor(
        **image_processor_kwargs(config.get("preprocess_cfg", {}), vision_config.image_size)
    )
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "open_clip_source.json").write_text(
            json.dumps({"open_clip_dir": str(source.resolve()), "with_projection": with_projection}, indent=1)
            + "\n"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.foundation.convert_clip",
        description="Convert an open_clip vision tower into a transformers CLIPVisionModel directory.",
    )
    parser.add_argument("--open-clip", type=Path, required=True, help="open_clip local-dir model directory")
    parser.add_argument("--out", type=Path, required=True, help="output transformers model directory")
    parser.add_argument(
        "--with-projection",
        action="store_true",
        help="write CLIPVisionModelWithProjection (keeps open_clip's image projection)",
    )
    args = parser.parse_args(argv)
    out = convert_open_clip_dir(args.open_clip, args.out, with_projection=args.with_projection)
    print(f"converted {args.open_clip} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
