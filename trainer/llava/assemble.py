"""Parts -> a transformers ``LlavaNextForConditionalGeneration`` + ``LlavaNextProcessor``.

Any transformers CLIP vision tower directory (``CLIPVisionModel`` or a full ``CLIPModel``; the converted
SynthWorld CLIP included), any transformers causal LM directory and its tokenizer become one LLaVA-NeXT
model with (llava.md §3, serving.md §7):

* ``image_token_id`` = the tokenizer's ``<image>`` id (added as a special token, with the LM's embeddings
  resized, when the tokenizer lacks it), pinpoints from the tower's tile size and the configured grids
  (transformers stores them as [height, width]), ``vision_feature_layer`` -2, strategy "default";
* the projector: ``mlp2x_gelu`` is transformers' own linear_1 -> GELU -> linear_2. ``linear`` (LLaVA v1) is
  expressed in the same module as linear_1 -> identity -> linear_2 with linear_2 fixed to the identity
  matrix and frozen by the stages, so the model class and the saved format stay stock transformers;
* ``image_newline`` initialised randn / sqrt(hidden) (LLaVA-NeXT's init, also transformers' own);
* vision tower and LM weights copied exactly (tests check bit equality with the source directories);
* a processor whose image processor uses the CLIP's mean/std, the tower's tile size and bicubic resizing,
  ``patch_size``, ``num_additional_image_tokens=1`` (CLIP has a CLS token) and the tokenizer's chat template.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    CLIPVisionModel,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    PreTrainedTokenizerBase,
)

from trainer.llava.config import ArchitectureConfig
from vision_common.anyres.geometry import AnyResConfig, transformers_pinpoints
from vision_common.anyres.pixels import PixelConfig
from vision_common.chat.conversation import DEFAULT_IMAGE_TOKEN
from vision_common.clip_constants import CLIP_MEAN, CLIP_STD

# PIL.Image.Resampling.BICUBIC: LLaVA-NeXT's AnyRes resize, and the only one anyres_pixels reproduces.
BICUBIC = 3


class AssemblyError(ValueError):
    """A part cannot be loaded or does not fit; the message names the directory and the problem."""


@dataclass(frozen=True)
class LlavaParts:
    model: LlavaNextForConditionalGeneration
    processor: LlavaNextProcessor


def _require_dir(path: str | os.PathLike[str], what: str) -> Path:
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise AssemblyError(f"{what} {directory}: not a transformers model directory (no config.json)")
    return directory


def load_vision_tower(path: str | os.PathLike[str]) -> CLIPVisionModel:
    directory = _require_dir(path, "vision tower")
    try:
        return CLIPVisionModel.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise AssemblyError(f"vision tower {directory}: cannot load a CLIP vision model: {exc}") from exc


def load_language_model(path: str | os.PathLike[str]) -> torch.nn.Module:
    directory = _require_dir(path, "language model")
    try:
        return AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise AssemblyError(f"language model {directory}: cannot load a causal LM: {exc}") from exc


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    directory = Path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise AssemblyError(f"tokenizer {directory}: cannot load: {exc}") from exc
    if not tokenizer.is_fast:
        raise AssemblyError(
            f"tokenizer {directory}: a fast tokenizer is required (offsets build label masks)"
        )
    return tokenizer


def ensure_image_token(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Make ``<image>`` one special token and give the tokenizer a pad token; True if the vocab grew."""
    grew = False
    if tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN) in (None, tokenizer.unk_token_id):
        tokenizer.add_special_tokens({"additional_special_tokens": [DEFAULT_IMAGE_TOKEN]})
        grew = True
    if tokenizer(DEFAULT_IMAGE_TOKEN, add_special_tokens=False)["input_ids"] != [
        tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN)
    ]:
        raise AssemblyError(
            "the tokenizer splits '<image>' into several tokens; it must be one special token"
        )
    if tokenizer.pad_token is None:
        # LLaVA's v1 recipe pads with unk; eos is the fallback for tokenizers without one.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return grew


def read_clip_normalisation(
    vision_dir: str | os.PathLike[str],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) from the tower's ``preprocessor_config.json``, OpenAI CLIP's values when it has none."""
    config_path = Path(vision_dir) / "preprocessor_config.json"
    if not config_path.is_file():
        return CLIP_MEAN, CLIP_STD
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
        return tuple(data.get("image_mean", CLIP_MEAN)), tuple(data.get("image_std", CLIP_STD))
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise AssemblyError(f"{config_path}: cannot read image mean/std: {exc}") from exc


def anyres_for_tower(vision_config: Any, arch: ArchitectureConfig) -> AnyResConfig:
    tile, patch = vision_config.image_size, vision_config.patch_size
    return AnyResConfig(
        tile=tile, patch=patch, pinpoints=tuple((c * tile, r * tile) for c, r in arch.anyres_grids)
    )


def build_llava_config(
    vision_config: Any, text_config: Any, arch: ArchitectureConfig, image_token_id: int
) -> LlavaNextConfig:
    anyres = anyres_for_tower(vision_config, arch)
    return LlavaNextConfig(
        vision_config=vision_config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=image_token_id,
        projector_hidden_act="gelu" if arch.projector == "mlp2x_gelu" else "linear",
        vision_feature_select_strategy="default",
        vision_feature_layer=arch.vision_feature_layer,
        image_grid_pinpoints=transformers_pinpoints(anyres),
        image_seq_length=anyres.patches_per_side**2,
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )


def build_processor(
    tokenizer: PreTrainedTokenizerBase, anyres: AnyResConfig, mean: tuple[float, ...], std: tuple[float, ...]
) -> LlavaNextProcessor:
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": anyres.tile},
        crop_size={"height": anyres.tile, "width": anyres.tile},
        image_grid_pinpoints=transformers_pinpoints(anyres),
        image_mean=list(mean),
        image_std=list(std),
        resample=BICUBIC,
        do_pad=True,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=anyres.patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=DEFAULT_IMAGE_TOKEN,
        chat_template=tokenizer.chat_template,
    )


def is_linear_projector(model: LlavaNextForConditionalGeneration) -> bool:
    return model.config.projector_hidden_act == "linear"


def assemble_llava(
    vision_dir: str | os.PathLike[str],
    lm_dir: str | os.PathLike[str],
    tokenizer_dir: str | os.PathLike[str] | None,
    arch: ArchitectureConfig,
) -> LlavaParts:
    """Build the model from parts (projector and newline drawn from the global torch RNG: seed first)."""
    vision = load_vision_tower(vision_dir)
    language = load_language_model(lm_dir)
    tokenizer = load_tokenizer(tokenizer_dir or lm_dir)
    if ensure_image_token(tokenizer) or language.get_input_embeddings().num_embeddings < len(tokenizer):
        language.resize_token_embeddings(len(tokenizer))
    image_token_id = tokenizer.convert_tokens_to_ids(DEFAULT_IMAGE_TOKEN)
    config = build_llava_config(vision.config, language.config, arch, image_token_id)
    model = LlavaNextForConditionalGeneration(config)
    inner = model.model
    with torch.no_grad():
        inner.vision_tower.load_state_dict(vision.state_dict(), strict=True)
        inner.language_model.load_state_dict(language.model.state_dict(), strict=True)
        if not config.tie_word_embeddings:
            model.lm_head.load_state_dict(language.lm_head.state_dict(), strict=True)
        hidden = config.text_config.hidden_size
        inner.image_newline.copy_(torch.randn(hidden) / hidden**0.5)
        if arch.projector == "linear":
            inner.multi_modal_projector.linear_2.weight.copy_(torch.eye(hidden))
            inner.multi_modal_projector.linear_2.bias.zero_()
    if config.tie_word_embeddings and model.lm_head.weight is not inner.language_model.embed_tokens.weight:
        raise AssemblyError(f"language model {lm_dir}: tied embeddings were not tied in the assembled model")
    model.generation_config = language.generation_config
    mean, std = read_clip_normalisation(vision_dir)
    processor = build_processor(tokenizer, anyres_for_tower(vision.config, arch), mean, std)
    return LlavaParts(model=model, processor=processor)


def load_llava(model_dir: str | os.PathLike[str]) -> LlavaParts:
    """A saved LLaVA-NeXT model + processor (e.g. stage 1's export, the init of stage 2), offline."""
    directory = _require_dir(model_dir, "LLaVA model")
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            directory, local_files_only=True, dtype=torch.float32
        )
        processor = AutoProcessor.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise AssemblyError(f"LLaVA model {directory}: cannot load: {exc}") from exc
    if not isinstance(model, LlavaNextForConditionalGeneration):
        raise AssemblyError(
            f"LLaVA model {directory}: expected LlavaNextForConditionalGeneration, got {type(model).__name__}"
        )
    return LlavaParts(model=model, processor=processor)


def set_anyres_grids(parts: LlavaParts, grids: tuple[tuple[int, int], ...]) -> None:
    """Replace a loaded model's AnyRes grids (model config and image processor together, so the number of
    image tokens the processor inserts matches what the model packs). The weights do not depend on them."""
    arch = ArchitectureConfig(anyres_grids=grids)
    pinpoints = transformers_pinpoints(anyres_for_tower(parts.model.config.vision_config, arch))
    parts.model.config.image_grid_pinpoints = pinpoints
    parts.processor.image_processor.image_grid_pinpoints = pinpoints


def pixel_config_of(processor: LlavaNextProcessor) -> PixelConfig:
    """The training pixel pipeline's settings, read from the processor so training and inference agree."""
    image_processor = processor.image_processor
    resample = getattr(image_processor, "resample", BICUBIC)
    if int(resample) != BICUBIC:
        raise AssemblyError(
            f"image processor resample={resample!r}: the trainer's pixel pipeline is bicubic only"
        )
    return PixelConfig(mean=tuple(image_processor.image_mean), std=tuple(image_processor.image_std))


def anyres_of(model: LlavaNextForConditionalGeneration) -> AnyResConfig:
    return AnyResConfig.from_transformers(model.config)


@torch.no_grad()
def vision_features(model: LlavaNextForConditionalGeneration, crops: torch.Tensor) -> torch.Tensor:
    """The projector's input for ``crops`` [N, 3, t, t] -> [N*P, D]: the tower's selected layer, with the CLS
    token dropped under the "default" select strategy (as LlavaNext does; "full" keeps it)."""
    layer = model.config.vision_feature_layer
    if not isinstance(layer, int):
        raise AssemblyError(f"vision_feature_layer must be one layer index here, got {layer!r}")
    hidden = model.model.vision_tower(crops, output_hidden_states=True).hidden_states[layer]
    if model.config.vision_feature_select_strategy == "default":
        hidden = hidden[:, 1:, :]
    return hidden.reshape(-1, hidden.shape[-1])


@torch.no_grad()
def standardize_projector_input(
    model: LlavaNextForConditionalGeneration, features: torch.Tensor, eps: float = 1e-6
) -> None:
    """Fold a per-channel standardisation of the vision features into the projector's first layer.

    A ViT's patch features share a large common component (the tiny SynthWorld CLIP's layer -2 tokens have
    norm ~30 with mean pairwise cosine 0.65-0.8), so a freshly initialised projector maps every patch to
    nearly the same vector and the LM sees an image as one repeated token. ``linear_1(x)`` becomes
    ``linear_1((x - mean) / std)``, computed from ``features`` [N, D] (``vision_features`` of a few training
    images): a data-dependent initialisation, not a new layer, so the model stays stock transformers."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, D], got {tuple(features.shape)}")
    linear_1 = model.model.multi_modal_projector.linear_1
    if features.shape[1] != linear_1.in_features:
        raise ValueError(
            f"features have {features.shape[1]} channels, the projector takes {linear_1.in_features}"
        )
    mean, std = features.mean(0), features.std(0) + eps
    weight = linear_1.weight / std  # [out, in]: scales every input channel by 1/std
    linear_1.bias.copy_(linear_1.bias - weight @ mean)
    linear_1.weight.copy_(weight)
