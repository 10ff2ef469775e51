"""Create, load and save CLIP models for REACT customization, offline.

Directory format (open_clip's ``local-dir:`` layout plus REACT's settings)::

    open_clip_config.json        {"model_cfg": {...}, "preprocess_cfg": {...}, "react_cfg": {...} | absent, ...}
    open_clip_model.safetensors  every weight, gated blocks under the fork's names
    tokenizer files              when the base model's tokenizer is a local HF tokenizer (``hf_tokenizer_name: "."``)

``model_cfg`` is the base model's open_clip config, unchanged, so open_clip itself can build the base
architecture; ``react_cfg`` (``{"enabled": true, "last_k_layers": K, "mlp_ratio": 4.0, ...}``) sits at the top
level, where open_clip ignores it. A model without ``react_cfg`` (the ``locked-text``, ``locked-image`` and
``full`` strategies) is a plain open_clip directory. The fork's own configs put ``react_cfg`` inside
``vision_cfg``; those are read too (open_clip 3 would reject the key there, so it is moved out before building).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from react_explorer.customized.gated_blocks import ReactModelConfig, ReactModelError, attach_gated_blocks
from react_explorer.customized.state_dicts import load_customized_state, read_checkpoint_file
from vision_common.atomic import atomic_directory

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
WEIGHT_FILES = (WEIGHTS_NAME, "open_clip_pytorch_model.bin")
REACT_KEY = "react_cfg"
TOKENIZER_IN_DIR = "."
# HF tokenizer files copied next to the weights when the base model reads its tokenizer from a local folder.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)
REGISTRY_NAME = "react_open_clip_configs"


@dataclass
class ClipBundle:
    """A loaded CLIP and everything needed to save it again."""

    model: nn.Module
    train_transform: Callable
    preprocess: Callable  # the validation transform
    tokenizer: Callable
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    react: ReactModelConfig | None
    tokenizer_dir: Path | None  # a local HF tokenizer folder, copied on save
    source: str


def split_react_cfg(
    model_cfg: dict[str, Any], config: dict[str, Any]
) -> tuple[dict, ReactModelConfig | None]:
    """(model_cfg without any ``vision_cfg.react_cfg``, the REACT settings from the top level or the fork's spot)."""
    model_cfg = json.loads(json.dumps(model_cfg))
    vision = model_cfg.get("vision_cfg", {})
    fork_style = vision.pop(REACT_KEY, None)
    top = config.get(REACT_KEY)
    if fork_style is not None and top is not None:
        raise ReactModelError(
            "react_cfg is given both at the top level and in model_cfg.vision_cfg; keep one"
        )
    data = top if top is not None else fork_style
    if data is not None and isinstance(data, dict) and data.get("enabled") is False:
        data = None
    return model_cfg, (ReactModelConfig.from_dict(data) if data is not None else None)


def read_config(root: Path) -> dict[str, Any]:
    path = root / CONFIG_NAME
    if not path.is_file():
        raise ReactModelError(f"model directory {root} has no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReactModelError(f"{path} is not valid JSON: {exc}") from exc
    model_cfg = config.get("model_cfg") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or not all(
        k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")
    ):
        raise ReactModelError(f"{path}: 'model_cfg' must hold embed_dim, vision_cfg and text_cfg")
    return config


def has_react_cfg(root: str | os.PathLike[str]) -> bool:
    """True when a model directory's config carries REACT settings (top level or the fork's vision_cfg)."""
    try:
        config = read_config(Path(root))
    except ReactModelError:
        return False
    return REACT_KEY in config or REACT_KEY in config["model_cfg"].get("vision_cfg", {})


def local_tokenizer_dir(root: Path, model_cfg: dict[str, Any]) -> Path | None:
    """The HF tokenizer folder a relative ``hf_tokenizer_name`` points at inside ``root`` (None otherwise)."""
    name = model_cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else root / name
    return path.resolve() if (path / "tokenizer.json").is_file() else None


def build_architecture(
    model_cfg: dict[str, Any], preprocess_cfg: dict[str, Any], tokenizer_dir: Path | None
) -> tuple[nn.Module, Callable, Callable, Callable]:
    """Random-init ``(model, train_transform, val_transform, tokenizer)`` from an open_clip config, offline.

    The config is registered under a content-addressed name (a local tokenizer by absolute path), as open_clip
    only builds registered names; nothing is looked up on a hub.
    """
    import open_clip  # heavy; only where a model is built

    cfg = json.loads(json.dumps(model_cfg))
    if tokenizer_dir is not None:
        cfg["text_cfg"]["hf_tokenizer_name"] = str(tokenizer_dir)
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    name = f"react-base-{digest}"
    config_file = Path(tempfile.gettempdir()) / REGISTRY_NAME / f"{name}.json"
    if not config_file.is_file():
        config_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = config_file.with_name(f".{config_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cfg), encoding="utf-8")
        os.replace(tmp, config_file)
    open_clip.add_model_config(config_file)
    model, train_transform, val_transform = open_clip.create_model_and_transforms(
        name,
        image_mean=_tuple_or_none(preprocess_cfg.get("mean")),
        image_std=_tuple_or_none(preprocess_cfg.get("std")),
        image_interpolation=preprocess_cfg.get("interpolation"),
        image_resize_mode=preprocess_cfg.get("resize_mode"),
    )
    return model, train_transform, val_transform, open_clip.get_tokenizer(name)


def _tuple_or_none(value: Any) -> tuple[float, ...] | None:
    return tuple(float(v) for v in value) if value is not None else None


def load_model_dir(root: str | os.PathLike[str]) -> ClipBundle:
    """Load a base or customized model directory (eval mode, fp32, CPU); errors name the file."""
    root = Path(root).expanduser().resolve()
    config = read_config(root)
    model_cfg, react = split_react_cfg(config["model_cfg"], config)
    weights = next((root / name for name in WEIGHT_FILES if (root / name).is_file()), None)
    if weights is None:
        raise ReactModelError(f"model directory {root} has no weights ({' or '.join(WEIGHT_FILES)})")
    tokenizer_dir = local_tokenizer_dir(root, model_cfg)
    name = model_cfg["text_cfg"].get("hf_tokenizer_name")
    if name and not Path(name).is_absolute() and tokenizer_dir is None and (root / name).exists():
        raise ReactModelError(f"{root / CONFIG_NAME}: tokenizer folder {root / name} has no tokenizer.json")
    preprocess_cfg = dict(config.get("preprocess_cfg") or {})
    model, train_tf, val_tf, tokenizer = build_architecture(model_cfg, preprocess_cfg, tokenizer_dir)
    if react is not None:
        attach_gated_blocks(model, react, ls_init_value=model_cfg["vision_cfg"].get("ls_init_value"))
    missing = load_customized_state(model, read_checkpoint_file(weights), str(weights))
    if react is not None and missing:
        raise ReactModelError(
            f"{weights}: react_cfg asks for gated blocks but the weights lack {missing[:3]}"
        )
    model.eval()
    return ClipBundle(
        model, train_tf, val_tf, tokenizer, model_cfg, preprocess_cfg, react, tokenizer_dir, str(root)
    )


def load_named_model(name: str, checkpoint: str | os.PathLike[str]) -> ClipBundle:
    """An open_clip model name (``ViT-B-32``) with a local checkpoint file (open_clip, fork or plain names)."""
    import open_clip  # heavy; only where a model is built

    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        raise ReactModelError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
    model_cfg, react = split_react_cfg(model_cfg, {})
    model, train_tf, val_tf = open_clip.create_model_and_transforms(name)
    preprocess_cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    state = read_checkpoint_file(checkpoint)
    has_gated = any(".gated_attn_block." in key for key in state)
    if has_gated:
        raise ReactModelError(
            f"{checkpoint} holds gated blocks; load it into a model built with react_cfg (a model directory "
            "whose open_clip_config.json has react_cfg)"
        )
    load_customized_state(model, state, str(checkpoint))
    model.eval()
    return ClipBundle(
        model, train_tf, val_tf, open_clip.get_tokenizer(name), model_cfg, preprocess_cfg, react, None,
        f"{name}:{checkpoint}",
    )  # fmt: skip


def load_base(base: str, checkpoint: str | None = None) -> ClipBundle:
    """``--base``: a model directory (``local-dir:`` prefix optional), or an open_clip name plus a checkpoint."""
    location = base.removeprefix("local-dir:")
    path = Path(location).expanduser()
    if path.is_dir():
        if checkpoint:
            raise ReactModelError(
                f"--base {base} is a model directory with its own weights; drop the checkpoint"
            )
        return load_model_dir(path)
    if checkpoint is None:
        raise ReactModelError(
            f"--base {base}: not a model directory; an open_clip model name needs a checkpoint file "
            "(random weights customize nothing)"
        )
    return load_named_model(location, checkpoint)


def save_model_dir(
    model: nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any],
    react: ReactModelConfig | None,
    tokenizer_dir: Path | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the directory atomically: config (+ ``react_cfg``, + ``extra`` provenance), safetensors, tokenizer."""
    from safetensors.torch import save_file  # safetensors only where a file is written

    cfg = json.loads(json.dumps(model_cfg))
    cfg.get("vision_cfg", {}).pop(REACT_KEY, None)
    if tokenizer_dir is not None:
        cfg["text_cfg"]["hf_tokenizer_name"] = TOKENIZER_IN_DIR
    config: dict[str, Any] = {"model_cfg": cfg, "preprocess_cfg": preprocess_cfg}
    if react is not None:
        config[REACT_KEY] = react.to_dict()
    for key, value in (extra or {}).items():
        if key in config:
            raise ReactModelError(f"save_model_dir: extra key {key!r} would overwrite the config's own")
        config[key] = value
    state = {key: value.detach().to("cpu").contiguous().clone() for key, value in model.state_dict().items()}
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                if (tokenizer_dir / name).is_file():
                    shutil.copy2(tokenizer_dir / name, tmp / name)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return out
