"""The tiny SynthWorld CLIP: a real open_clip ``CLIP`` with a custom config and the SynthWorld tokenizer.

The architecture is an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) registered at run
time with ``open_clip.add_model_config`` (no download). The text tower reads ids from the project's HF
``PreTrainedTokenizerFast`` through open_clip's ``hf_tokenizer_name`` mechanism, so ``open_clip.get_tokenizer``
works for the registered name and for the saved ``local-dir:`` layout.

Text pooling: open_clip's default ``argmax`` pooling assumes the end-of-text token has the largest id (true for
OpenAI's BPE, false here: ``</s>`` is id 2). We therefore pool at the ``</s>`` position (``pool_type='eos'``)
and make the tokenizer always emit ``<s> ... </s>`` (``add_bos_token``/``add_eos_token`` tokenizer kwargs), since
the LM tokenizer on disk may add only ``<s>``. The ``tokenizers`` truncation keeps the template tokens, so a
caption longer than the context still ends in ``</s>``. Under the causal mask the ``</s>`` position is the one
that has seen the whole caption.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vision_common.atomic import atomic_directory, atomic_write_json
from vision_common.clip_constants import CLIP_MEAN, CLIP_STD
from vision_common.open_clip_dir import (
    OPEN_CLIP_CONFIG_NAME,
    OPEN_CLIP_WEIGHTS_NAME,
    TOKENIZER_IN_DIR,
    OpenClipDirError,
    create_open_clip,
    register_open_clip_config,
)

MODEL_NAME_PREFIX = "synthworld-clip"


class TinyClipLoadError(OpenClipDirError):
    """A tokenizer directory is missing or lacks what the text tower needs; the message names it. (A saved
    directory is read by ``vision_common.open_clip_dir.load_open_clip_dir``, whose errors are the base class.)"""


@dataclass(frozen=True)
class TinyClipConfig:
    """Architecture of the tiny SynthWorld CLIP (open_clip ``CLIP`` with a ViT and a causal text transformer).

    Presets: ``tiny()`` for tests (32 px, 64k-113k params with a 512-2048 vocabulary, builds in milliseconds);
    ``default()`` for the recipe (64 px, 1.72M params, trained <= 7 minutes on 2 CPU cores by ``clip_train``).
    """

    preset: str = "default"
    embed_dim: int = 128
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 128
    vision_head_width: int = 64
    vision_layers: int = 4
    text_width: int = 128
    text_heads: int = 2
    text_layers: int = 3
    context_length: int = 32
    mlp_ratio: float = 4.0
    quick_gelu: bool = False
    # log(1/0.07): CLIP's initial temperature.
    init_logit_scale: float = math.log(1 / 0.07)
    image_mean: tuple[float, float, float] = field(default=CLIP_MEAN)
    image_std: tuple[float, float, float] = field(default=CLIP_STD)
    interpolation: str = "bicubic"
    # "squash" resizes the whole image to image_size x image_size: SynthWorld images are 64-128 px with any aspect
    # and objects anywhere, so open_clip's default "shortest" (resize + centre crop) can cut the labelled object
    # out of the picture. LLaVA-NeXT's base view is a squash resize too.
    resize_mode: str = "squash"

    def __post_init__(self) -> None:
        positive = {
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "vision_width": self.vision_width,
            "vision_head_width": self.vision_head_width,
            "vision_layers": self.vision_layers,
            "text_width": self.text_width,
            "text_heads": self.text_heads,
            "text_layers": self.text_layers,
            "context_length": self.context_length,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"TinyClipConfig.{name} must be a positive int, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"TinyClipConfig: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.vision_width % self.vision_head_width:
            raise ValueError(
                f"TinyClipConfig: vision_width {self.vision_width} is not a multiple of vision_head_width "
                f"{self.vision_head_width}"
            )
        if self.text_width % self.text_heads:
            raise ValueError(
                f"TinyClipConfig: text_width {self.text_width} is not a multiple of text_heads {self.text_heads}"
            )
        if self.context_length < 3:
            raise ValueError(
                "TinyClipConfig.context_length must leave room for <s>, one token and </s> (>= 3)"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"TinyClipConfig.mlp_ratio must be positive, got {self.mlp_ratio}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError("TinyClipConfig.image_mean/image_std must be 3 values with positive std")
        if self.resize_mode not in ("squash", "shortest"):
            raise ValueError(
                f"TinyClipConfig.resize_mode must be squash or shortest, got {self.resize_mode!r}"
            )
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ValueError(
                f"TinyClipConfig.interpolation must be bicubic or bilinear, got {self.interpolation!r}"
            )

    @classmethod
    def tiny(cls) -> TinyClipConfig:
        """Test preset: 32 px images, 8 px patches, 32-wide towers with 1-2 layers."""
        return cls(
            preset="tiny",
            embed_dim=32,
            image_size=32,
            patch_size=8,
            vision_width=32,
            vision_head_width=16,
            vision_layers=2,
            text_width=32,
            text_heads=2,
            text_layers=1,
            context_length=16,
        )

    @classmethod
    def default(cls) -> TinyClipConfig:
        """Recipe preset: 64 px images, 8 px patches (65 tokens), 128-wide ViT with 64-wide heads."""
        return cls()

    @classmethod
    def from_preset(cls, name: str) -> TinyClipConfig:
        presets = {"tiny": cls.tiny, "default": cls.default}
        if name not in presets:
            raise ValueError(f"unknown TinyClipConfig preset {name!r}; choose from {sorted(presets)}")
        return presets[name]()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyClipConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"TinyClipConfig: unknown fields {unknown}")
        values = dict(data)
        for key in ("image_mean", "image_std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class TokenizerSpecials:
    """What the text tower needs to know about the tokenizer."""

    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int


def load_hf_tokenizer(tokenizer_dir: str | os.PathLike[str]) -> Any:
    """Load the HF tokenizer exactly as open_clip's ``HFTokenizer`` does, with a clear error if it is missing."""
    from transformers import AutoTokenizer

    path = Path(tokenizer_dir)
    if not (path / "tokenizer.json").is_file():
        raise TinyClipLoadError(f"tokenizer directory {path} has no tokenizer.json")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TinyClipLoadError(f"cannot load the tokenizer in {path}: {exc}") from exc


def tokenizer_specials(tokenizer: Any, source: str) -> TokenizerSpecials:
    """Read vocab size and the <pad>/<s>/</s> ids; raise naming ``source`` if one is missing."""
    ids = {"pad": tokenizer.pad_token_id, "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id}
    missing = [name for name, value in ids.items() if value is None]
    if missing:
        raise TinyClipLoadError(
            f"tokenizer {source} defines no {'/'.join(missing)} token (needed for EOS pooling)"
        )
    return TokenizerSpecials(
        vocab_size=len(tokenizer), pad_id=ids["pad"], bos_id=ids["bos"], eos_id=ids["eos"]
    )


def open_clip_model_cfg(
    cfg: TinyClipConfig, specials: TokenizerSpecials, tokenizer_name: str
) -> dict[str, Any]:
    """The open_clip model config (the JSON ``add_model_config`` and ``local-dir:`` expect)."""
    return {
        "embed_dim": cfg.embed_dim,
        "quick_gelu": cfg.quick_gelu,
        "init_logit_scale": cfg.init_logit_scale,
        "vision_cfg": {
            "image_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "width": cfg.vision_width,
            "head_width": cfg.vision_head_width,
            "layers": cfg.vision_layers,
            "mlp_ratio": cfg.mlp_ratio,
        },
        "text_cfg": {
            "context_length": cfg.context_length,
            "vocab_size": specials.vocab_size,
            "width": cfg.text_width,
            "heads": cfg.text_heads,
            "layers": cfg.text_layers,
            "mlp_ratio": cfg.mlp_ratio,
            "hf_tokenizer_name": tokenizer_name,
            # Force "<s> $A </s>" whatever post-processor the tokenizer was saved with (see module docstring).
            "tokenizer_kwargs": {"add_bos_token": True, "add_eos_token": True},
            "pad_id": specials.pad_id,
            "eos_id": specials.eos_id,
            "pool_type": "eos",
        },
    }


def open_clip_preprocess_cfg(cfg: TinyClipConfig) -> dict[str, Any]:
    return {
        "size": cfg.image_size,
        "mode": "RGB",
        "mean": list(cfg.image_mean),
        "std": list(cfg.image_std),
        "interpolation": cfg.interpolation,
        "resize_mode": cfg.resize_mode,
    }


def _model_cfg_for(cfg: TinyClipConfig, tokenizer_dir: str | os.PathLike[str]) -> dict[str, Any]:
    tokenizer_path = Path(tokenizer_dir).resolve()
    specials = tokenizer_specials(load_hf_tokenizer(tokenizer_path), str(tokenizer_path))
    return open_clip_model_cfg(cfg, specials, str(tokenizer_path))


def register_tiny_clip(
    cfg: TinyClipConfig,
    tokenizer_dir: str | os.PathLike[str],
    *,
    registry_dir: str | os.PathLike[str] | None = None,
) -> str:
    """Register the architecture with open_clip and return the model name.

    The name is content-addressed (preset + hash of the config JSON, which includes the absolute tokenizer
    path), so re-registering the same pair is idempotent and two tokenizers never collide.
    ``open_clip.create_model_and_transforms(name)`` and ``open_clip.get_tokenizer(name)`` then work offline.
    """
    return register_open_clip_config(
        _model_cfg_for(cfg, tokenizer_dir), f"{MODEL_NAME_PREFIX}-{cfg.preset}", registry_dir=registry_dir
    )


def create_tiny_clip(
    cfg: TinyClipConfig, tokenizer_dir: str | os.PathLike[str], *, seed: int | None = None
) -> tuple[torch.nn.Module, Any, Any, Any]:
    """Random-init tiny CLIP: ``(model, train_transform, val_transform, tokenizer)``."""
    model_cfg = _model_cfg_for(cfg, tokenizer_dir)
    if seed is not None:
        torch.manual_seed(seed)
    return create_open_clip(
        model_cfg,
        open_clip_preprocess_cfg(cfg),
        tokenizer_dir=None,
        prefix=f"{MODEL_NAME_PREFIX}-{cfg.preset}",
    )


def save_open_clip_dir(
    model: torch.nn.Module,
    cfg: TinyClipConfig,
    out_dir: str | os.PathLike[str],
    *,
    tokenizer_dir: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the open_clip ``local-dir:`` layout atomically.

    ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``, plus ``tiny_clip_cfg`` and ``extra`` for
    provenance), ``open_clip_model.safetensors``, and the tokenizer files next to them.
    """
    from safetensors.torch import save_file

    tokenizer = load_hf_tokenizer(tokenizer_dir)
    specials = tokenizer_specials(tokenizer, str(tokenizer_dir))
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    config = {
        "model_cfg": open_clip_model_cfg(cfg, specials, TOKENIZER_IN_DIR),
        "preprocess_cfg": open_clip_preprocess_cfg(cfg),
        "tiny_clip_cfg": asdict(cfg),
    }
    if extra:
        config.update(extra)
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        save_file(state, str(tmp / OPEN_CLIP_WEIGHTS_NAME), metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / OPEN_CLIP_CONFIG_NAME, config)
    return out


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts of the whole model and of each tower (open_clip ``CLIP`` attribute names)."""
    visual = sum(p.numel() for p in model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "visual": visual, "text": total - visual}
