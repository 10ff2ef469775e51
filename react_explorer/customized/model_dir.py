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

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from react_explorer.customized.gated_blocks import ReactModelConfig, ReactModelError, attach_gated_blocks
from react_explorer.customized.state_dicts import load_customized_state, read_checkpoint_file
from vision_common.atomic import atomic_directory
from vision_common.open_clip_dir import (
    OPEN_CLIP_CONFIG_NAME,
    OPEN_CLIP_WEIGHTS_NAME,
    TOKENIZER_IN_DIR,
    OpenClipDirError,
    create_open_clip,
    read_open_clip_config,
    read_open_clip_dir,
)

REACT_KEY = "react_cfg"
# HF tokenizer files copied next to the weights when the base model reads its tokenizer from a local folder.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)


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


def has_react_cfg(root: str | os.PathLike[str]) -> bool:
    """True when a model directory's config carries REACT settings (top level or the fork's vision_cfg)."""
    try:
        config = read_open_clip_config(root)
    except OpenClipDirError:
        return False
    return REACT_KEY in config or REACT_KEY in config["model_cfg"].get("vision_cfg", {})


def load_model_dir(root: str | os.PathLike[str]) -> ClipBundle:
    """Load a base or customized model directory (eval mode, fp32, CPU); errors name the file."""
    try:
        directory = read_open_clip_dir(root)
    except OpenClipDirError as exc:
        raise ReactModelError(str(exc)) from exc
    model_cfg, react = split_react_cfg(directory.model_cfg, directory.config)
    # Random init from the config, then our own weight loading: open_clip's strict load knows no gated blocks,
    # and a fork checkpoint needs its key names mapped (state_dicts.py).
    model, train_tf, val_tf, tokenizer = create_open_clip(
        model_cfg, directory.preprocess_cfg, tokenizer_dir=directory.tokenizer_dir, prefix="react-base"
    )
    if react is not None:
        attach_gated_blocks(model, react, ls_init_value=model_cfg["vision_cfg"].get("ls_init_value"))
    weights = directory.weights
    missing = load_customized_state(model, read_checkpoint_file(weights), str(weights))
    if react is not None and missing:
        raise ReactModelError(
            f"{weights}: react_cfg asks for gated blocks but the weights lack {missing[:3]}"
        )
    model.eval()
    return ClipBundle(
        model, train_tf, val_tf, tokenizer, model_cfg, directory.preprocess_cfg, react, directory.tokenizer_dir,
        str(directory.root),
    )  # fmt: skip


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
        save_file(state, str(tmp / OPEN_CLIP_WEIGHTS_NAME), metadata={"format": "pt"})
        if tokenizer_dir is not None:
            for name in TOKENIZER_FILES:
                if (tokenizer_dir / name).is_file():
                    shutil.copy2(tokenizer_dir / name, tmp / name)
        (tmp / OPEN_CLIP_CONFIG_NAME).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return out
