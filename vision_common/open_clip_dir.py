"""open_clip ``local-dir:`` model directories, read offline, with a tokenizer stored beside the weights.

Layout (open_clip's own ``local-dir:`` format)::

    open_clip_config.json         {"model_cfg": {...}, "preprocess_cfg": {...}, ...provenance}
    open_clip_model.safetensors   (or open_clip_pytorch_model.bin)
    tokenizer.json, ...           when ``model_cfg.text_cfg.hf_tokenizer_name`` names a folder ("." = this one)

open_clip reads ``hf_tokenizer_name`` as a hub id relative to the working directory; offline and from any
working directory, a name that is a folder of the model directory has to be resolved there. The architecture is
then registered with open_clip under a content-addressed name (open_clip only builds registered names) from a
private copy of the config that carries the tokenizer's absolute path. Nothing is looked up on a hub.

The one loader of such directories: the tiny SynthWorld CLIP (``vision_common.tiny_clip``), plain directories
in the explorer's encoders, and REACT-customized directories (``react_explorer.customized.model_dir``, which
adds gated blocks before loading the weights itself) all go through ``read_open_clip_dir`` and
``create_open_clip``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vision_common.atomic import atomic_write_json

OPEN_CLIP_CONFIG_NAME = "open_clip_config.json"
OPEN_CLIP_WEIGHTS_NAME = "open_clip_model.safetensors"
# open_clip's local-dir loader accepts either file; safetensors is what the project writes.
OPEN_CLIP_WEIGHT_FILES = (OPEN_CLIP_WEIGHTS_NAME, "open_clip_pytorch_model.bin")
# ``hf_tokenizer_name`` of a directory whose tokenizer files sit next to the weights.
TOKENIZER_IN_DIR = "."
REGISTRY_DIR_NAME = "open_clip_dir_configs"


class OpenClipDirError(ValueError):
    """A model directory (or its tokenizer folder) is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class OpenClipDir:
    """A checked model directory: its config, its weights file and its local tokenizer folder (if any)."""

    root: Path
    config: dict[str, Any]
    weights: Path
    tokenizer_dir: Path | None  # None: no hf_tokenizer_name, or a hub id (open_clip's own tokenizers)

    @property
    def model_cfg(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.config["model_cfg"]))  # a copy: callers edit it before building

    @property
    def preprocess_cfg(self) -> dict[str, Any]:
        return dict(self.config.get("preprocess_cfg") or {})


def read_open_clip_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``open_clip_config.json`` of a saved directory."""
    path = Path(model_dir) / OPEN_CLIP_CONFIG_NAME
    if not path.is_file():
        raise OpenClipDirError(f"{path} not found: not an open_clip local-dir model")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OpenClipDirError(f"{path} is not valid JSON: {exc}") from exc
    model_cfg = config.get("model_cfg") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or not all(
        k in model_cfg for k in ("embed_dim", "vision_cfg", "text_cfg")
    ):
        raise OpenClipDirError(f"{path}: 'model_cfg' must hold embed_dim, vision_cfg and text_cfg")
    return config


def local_tokenizer_dir(model_dir: str | os.PathLike[str], model_cfg: dict[str, Any]) -> Path | None:
    """The folder ``text_cfg.hf_tokenizer_name`` names on disk (a relative name inside ``model_dir``).

    None when the name is unset or names no folder (a hub id such as ``bert-base-uncased``); a folder without
    ``tokenizer.json`` is an error, since open_clip would then try the hub with a path.
    """
    name = model_cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    if not name:
        return None
    path = Path(name) if Path(name).is_absolute() else Path(model_dir) / name
    if not path.is_dir():
        return None
    if not (path / "tokenizer.json").is_file():
        raise OpenClipDirError(
            f"{Path(model_dir) / OPEN_CLIP_CONFIG_NAME}: tokenizer folder {path} has no tokenizer.json"
        )
    return path.resolve()


def read_open_clip_dir(model_dir: str | os.PathLike[str]) -> OpenClipDir:
    """Check a directory: config, a weights file, the tokenizer folder it names (if any)."""
    root = Path(model_dir).expanduser().resolve()
    config = read_open_clip_config(root)
    weights = next((root / name for name in OPEN_CLIP_WEIGHT_FILES if (root / name).is_file()), None)
    if weights is None:
        raise OpenClipDirError(
            f"model directory {root} has no weights ({' or '.join(OPEN_CLIP_WEIGHT_FILES)})"
        )
    return OpenClipDir(root, config, weights, local_tokenizer_dir(root, config["model_cfg"]))


def register_open_clip_config(
    model_cfg: dict[str, Any], prefix: str, *, registry_dir: str | os.PathLike[str] | None = None
) -> str:
    """Register ``model_cfg`` with open_clip as ``<prefix>-<hash of the config>`` and return the name.

    Content-addressed, so registering the same config again is idempotent and two configs (two tokenizer
    paths, say) never share a name. The JSON file open_clip reads is written atomically (several processes).
    """
    import open_clip  # heavy; only where a model is built

    digest = hashlib.sha256(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:12]
    name = f"{prefix}-{digest}"
    folder = (
        Path(registry_dir) if registry_dir is not None else Path(tempfile.gettempdir()) / REGISTRY_DIR_NAME
    )
    config_file = folder / f"{name}.json"
    if not config_file.is_file():
        atomic_write_json(config_file, model_cfg)
    open_clip.add_model_config(config_file)
    return name


def create_open_clip(
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any],
    *,
    tokenizer_dir: Path | None,
    prefix: str,
    pretrained: Path | None = None,
) -> tuple[Any, Callable, Callable, Callable]:
    """``(model, train_transform, val_transform, tokenizer)`` built from a config, offline.

    ``tokenizer_dir`` (a local HF tokenizer) replaces ``hf_tokenizer_name`` by its absolute path;
    ``pretrained`` is a weights file open_clip loads strictly (None: random init, the caller loads weights).
    """
    import open_clip  # heavy; only where a model is built

    cfg = json.loads(json.dumps(model_cfg))
    if tokenizer_dir is not None:
        cfg["text_cfg"]["hf_tokenizer_name"] = str(tokenizer_dir)
    name = register_open_clip_config(cfg, prefix)
    model, train_transform, val_transform = open_clip.create_model_and_transforms(
        name,
        pretrained=str(pretrained) if pretrained is not None else None,
        image_mean=_floats_or_none(preprocess_cfg.get("mean")),
        image_std=_floats_or_none(preprocess_cfg.get("std")),
        image_interpolation=preprocess_cfg.get("interpolation"),
        image_resize_mode=preprocess_cfg.get("resize_mode"),
    )
    return model, train_transform, val_transform, open_clip.get_tokenizer(name)


def _floats_or_none(value: Any) -> tuple[float, ...] | None:
    return tuple(float(v) for v in value) if value is not None else None


def load_open_clip_dir(model_dir: str | os.PathLike[str]) -> tuple[Any, Callable, Callable]:
    """Load ``(model, preprocess, tokenizer)`` of a plain directory with its tokenizer inside; eval mode, fp32,
    CPU. open_clip loads the weights itself (strict), exactly as for any local checkpoint."""
    from safetensors import SafetensorError

    directory = read_open_clip_dir(model_dir)
    if directory.tokenizer_dir is None:
        raise OpenClipDirError(
            f"{directory.root}: tokenizer files not found (text_cfg.hf_tokenizer_name names no folder of "
            "the directory)"
        )
    try:
        model, _, preprocess, tokenizer = create_open_clip(
            directory.model_cfg,
            directory.preprocess_cfg,
            tokenizer_dir=directory.tokenizer_dir,
            prefix="local-dir",
            pretrained=directory.weights,
        )
    except (RuntimeError, SafetensorError, OSError) as exc:
        raise OpenClipDirError(
            f"cannot load weights {directory.weights} for {directory.root / OPEN_CLIP_CONFIG_NAME}: {exc}"
        ) from exc
    model.eval()
    return model, preprocess, tokenizer
