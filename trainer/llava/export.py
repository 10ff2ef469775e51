"""Export a trained model: a transformers directory, and the original-LLaVA layout that SGLang serves.

``export_transformers``: ``save_pretrained`` of the model and processor (chat template included) plus
``llava_trainer.json`` (what produced it). Loads offline with ``AutoModelForImageTextToText`` /
``AutoProcessor``, which is what the inference core uses.

``export_llava_original`` (GPU-UNVERIFIED: written against sglang 0.5.23 ``srt/models/llava.py`` and the
liuhaotian/llava-v1.6 config layout, never served): ``config.json`` with the Llama fields at top level and
``mm_vision_tower``, ``mm_projector_type``, ``image_aspect_ratio: anyres``, ``mm_patch_merge_type:
spatial_unpad``, (W, H) pinpoints; ``model.safetensors`` with LLaVA names (``model.layers.*``,
``model.mm_projector.{0,2}.*``, ``model.image_newline``, ``lm_head.weight``); the vision tower in its own
``clip_vision_tower/`` folder, because SGLang loads the tower from ``mm_vision_tower`` and picks CLIP only
when that path contains "clip"; tokenizer and image-processor files for ``--tokenizer-path``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from safetensors.torch import save_file
from transformers import CLIPImageProcessor, LlavaNextForConditionalGeneration, LlavaNextProcessor

from llava_demo.anyres import AnyResConfig
from trainer.atomic import atomic_directory
from trainer.llava.assemble import BICUBIC, is_linear_projector, load_llava

METADATA_NAME = "llava_trainer.json"
VISION_SUBDIR = "clip_vision_tower"
# sglang LlavaBaseForCausalLM.load_weights picks the tower class from this substring of mm_vision_tower.
SGLANG_CLIP_MARKER = "clip"
ORIGINAL_ARCHITECTURES = MappingProxyType(
    {
        "llama": "LlavaLlamaForCausalLM",
        "mistral": "LlavaMistralForCausalLM",
        "qwen2": "LlavaQwenForCausalLM",
    }
)


class ExportError(ValueError):
    """The model cannot be exported in the requested layout; the message says why."""


def export_transformers(
    model: LlavaNextForConditionalGeneration,
    processor: LlavaNextProcessor,
    out_dir: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """``save_pretrained`` model + processor into ``out_dir`` atomically (replacing an older export)."""
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / METADATA_NAME).write_text(json.dumps(dict(metadata or {}), indent=1) + "\n", encoding="utf-8")
    return out


def original_weight_names(model: LlavaNextForConditionalGeneration) -> dict[str, str]:
    """transformers LlavaNext parameter name -> original LLaVA name (vision tower excluded: it ships apart)."""
    linear = is_linear_projector(model)
    mapping: dict[str, str] = {}
    for name in model.state_dict():
        if name.startswith("model.vision_tower."):
            continue
        if name.startswith("model.language_model."):
            mapping[name] = "model." + name[len("model.language_model.") :]
        elif name.startswith("model.multi_modal_projector.linear_1."):
            leaf = name.rsplit(".", 1)[1]
            mapping[name] = f"model.mm_projector.{leaf}" if linear else f"model.mm_projector.0.{leaf}"
        elif name.startswith("model.multi_modal_projector.linear_2."):
            if not linear:
                mapping[name] = "model.mm_projector.2." + name.rsplit(".", 1)[1]
        elif name == "model.image_newline":
            mapping[name] = "model.image_newline"
        elif name == "lm_head.weight":
            if not model.config.tie_word_embeddings:
                mapping[name] = "lm_head.weight"
        else:
            raise ExportError(f"no original-LLaVA name for parameter {name!r}")
    return mapping


def original_config(
    model: LlavaNextForConditionalGeneration, processor: LlavaNextProcessor, vision_path: str
) -> dict[str, Any]:
    config = model.config
    text = config.text_config.to_dict()
    model_type = text.get("model_type")
    if model_type not in ORIGINAL_ARCHITECTURES:
        raise ExportError(
            f"language model type {model_type!r} has no original-LLaVA class; supported: {sorted(ORIGINAL_ARCHITECTURES)}"
        )
    anyres = AnyResConfig.from_transformers(config)
    tokenizer = processor.tokenizer
    return {
        **text,
        "architectures": [ORIGINAL_ARCHITECTURES[model_type]],
        "model_type": "llava",
        "mm_vision_tower": vision_path,
        "mm_hidden_size": config.vision_config.hidden_size,
        "mm_projector_type": "linear" if is_linear_projector(model) else "mlp2x_gelu",
        "mm_vision_select_layer": config.vision_feature_layer,
        "mm_vision_select_feature": "patch",
        "mm_patch_merge_type": "spatial_unpad",
        "image_aspect_ratio": "anyres",
        # The original code reads each pair as (width, height).
        "image_grid_pinpoints": [list(p) for p in anyres.pinpoints],
        "image_token_index": config.image_token_id,
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "use_mm_proj": True,
        "tie_word_embeddings": bool(config.tie_word_embeddings),
        "tokenizer_model_max_length": int(
            min(tokenizer.model_max_length, text.get("max_position_embeddings", 4096))
        ),
        "tokenizer_padding_side": "right",
        "torch_dtype": "float32",
    }


def export_llava_original(
    model: LlavaNextForConditionalGeneration, processor: LlavaNextProcessor, out_dir: str | os.PathLike[str]
) -> Path:
    """Write the original LLaVA / SGLang layout (see module docstring); GPU-unverified."""
    out = Path(out_dir)
    final_vision = (out / VISION_SUBDIR).resolve()
    if SGLANG_CLIP_MARKER not in str(final_vision):
        raise ExportError(f"{final_vision}: SGLang needs 'clip' in the vision tower path")
    names = original_weight_names(model)
    state = model.state_dict()
    tensors = {new: state[old].detach().to("cpu").contiguous().clone() for old, new in names.items()}
    anyres = AnyResConfig.from_transformers(model.config)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": anyres.tile},
        crop_size={"height": anyres.tile, "width": anyres.tile},
        image_mean=list(processor.image_processor.image_mean),
        image_std=list(processor.image_processor.image_std),
        resample=BICUBIC,
    )
    with atomic_directory(out) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = original_config(model, processor, str(final_vision))
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        processor.tokenizer.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        model.model.vision_tower.save_pretrained(tmp / VISION_SUBDIR)
        image_processor.save_pretrained(tmp / VISION_SUBDIR)
    return out


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.llava.export",
        description="Re-export a trained LLaVA-NeXT transformers directory (e.g. runs/x/final).",
    )
    parser.add_argument("--model", type=Path, required=True, help="transformers LLaVA-NeXT directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced atomically)")
    parser.add_argument(
        "--format",
        choices=("transformers", "llava"),
        default="llava",
        help="'llava': original LLaVA / SGLang layout (GPU-unverified); 'transformers': save_pretrained copy",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    parts = load_llava(args.model)
    if args.format == "llava":
        export_llava_original(parts.model, parts.processor, args.out)
    else:
        metadata = {"exported_from": str(args.model.resolve())}
        export_transformers(parts.model, parts.processor, args.out, metadata)
    print(f"exported {args.model} -> {args.out} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
