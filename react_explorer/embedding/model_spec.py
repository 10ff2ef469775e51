"""Where a CLIP model comes from: parse ``--model`` / ``--pretrained`` into a ``ModelSpec`` (no torch import).

Kept apart from ``encoders`` so that commands which only need the spec (indexing precomputed embeddings) do
not pay for importing torch (about 650 MB of RSS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from react_explorer.errors import EncoderLoadError
from vision_common.paths import PROJECT_ROOT

DEFAULT_MODEL_DIR = PROJECT_ROOT / "assets" / "synthworld" / "models" / "synthworld-clip"
LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"
_TRUE_WORDS = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ModelSpec:
    """Where a CLIP model comes from. ``describe()`` is the canonical string stored in index manifests."""

    kind: Literal["local_dir", "hf_hub", "named"]
    location: str  # absolute directory, hub repo id, or open_clip model name
    pretrained: str | None = None  # named models only: a tag or a checkpoint file

    def __post_init__(self) -> None:
        if self.kind not in ("local_dir", "hf_hub", "named"):
            raise ValueError(f"ModelSpec.kind must be local_dir, hf_hub or named, got {self.kind!r}")
        if not self.location:
            raise ValueError("ModelSpec.location is empty")
        if self.kind != "named" and self.pretrained is not None:
            raise ValueError(
                f"a {self.kind} model carries its own weights; pretrained={self.pretrained!r} conflicts"
            )

    def describe(self) -> str:
        if self.kind == "local_dir":
            return f"{LOCAL_DIR_PREFIX}{self.location}"
        if self.kind == "hf_hub":
            return f"{HF_HUB_PREFIX}{self.location}"
        return f"{self.location}" + (f"/{self.pretrained}" if self.pretrained else "")


def parse_model_spec(model: str | None, pretrained: str | None = None) -> ModelSpec:
    """Pure parsing of ``--model`` / ``--pretrained``; no file is opened except to tell a directory from a name."""
    if not model:
        if pretrained:
            raise EncoderLoadError("--pretrained needs --model (an open_clip model name)")
        return ModelSpec("local_dir", str(DEFAULT_MODEL_DIR))
    if model.startswith(LOCAL_DIR_PREFIX) or model.startswith(HF_HUB_PREFIX):
        if pretrained:
            raise EncoderLoadError(
                f"--model {model} carries its own weights; do not pass --pretrained {pretrained}"
            )
        if model.startswith(LOCAL_DIR_PREFIX):
            path = model[len(LOCAL_DIR_PREFIX) :]
            if not path:
                raise EncoderLoadError("--model local-dir: needs a directory path")
            return ModelSpec("local_dir", str(Path(path).expanduser().resolve()))
        repo = model[len(HF_HUB_PREFIX) :]
        if not repo:
            raise EncoderLoadError("--model hf-hub: needs a repository id (org/name)")
        return ModelSpec("hf_hub", repo)
    as_path = Path(model).expanduser()
    if as_path.is_dir():
        if pretrained:
            raise EncoderLoadError(f"--model {model} is a directory with its own weights; drop --pretrained")
        return ModelSpec("local_dir", str(as_path.resolve()))
    if pretrained and Path(pretrained).expanduser().is_file():
        pretrained = str(Path(pretrained).expanduser().resolve())
    return ModelSpec("named", model, pretrained)


def offline_from_env(environ: dict[str, str] | None = None) -> bool:
    """True when the HF/transformers offline switches are set (the tests and this project's default world)."""
    env = os.environ if environ is None else environ
    return any(
        env.get(name, "").strip().lower() in _TRUE_WORDS
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
