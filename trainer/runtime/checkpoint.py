"""Atomic training checkpoints: trainable weights, optimiser + scheduler, every process's RNG, the position.

Layout of ``<root>/step-<8 digits>/`` (written through ``vision_common.atomic.atomic_directory``, so a directory
under its final name is always complete; a crash mid-write leaves only a hidden ``.tmp`` sibling)::

    trainable.safetensors   the parameters that train (frozen ones are rebuilt from the model source)
    optimizer.pt            {"optimizer": ..., "scheduler": ...} state dicts
    rng.pt                  one RNG snapshot per process (python, numpy, torch CPU and CUDA)
    state.json              step, data position, world size, grad_accum, seed, counters, replica digests

Everything is read back with safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vision_common.atomic import atomic_directory

WEIGHTS_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
RNG_NAME = "rng.pt"
STATE_NAME = "state.json"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not fit the run; the message names the path."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: list[dict[str, Any]]
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters with ``requires_grad`` (tied parameters once, under their first name)."""
    return {
        name: param.detach().to("cpu", copy=True).contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def load_trainable_state(model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into the model's trainable parameters; names and shapes must match exactly."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: trainable parameters do not match the model (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); was it written for another stage or model?"
        )
    with torch.no_grad():
        for name, param in params.items():
            value = tensors[name]
            if value.shape != param.shape:
                raise CheckpointError(
                    f"{source}: {name} has shape {tuple(value.shape)}, the model has {tuple(param.shape)}"
                )
            param.copy_(value.to(param.device, param.dtype))


def state_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # reshape(-1): a 0-d tensor (a scalar gate, logit_scale) cannot be viewed as bytes directly.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def capture_rng() -> dict[str, Any]:
    """This process's RNG states, in types that ``torch.load(weights_only=True)`` accepts."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    root: str | os.PathLike[str],
    *,
    trainable: Mapping[str, torch.Tensor],
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    rng: list[dict[str, Any]],
    state: Mapping[str, Any],
) -> Path:
    """Write ``<root>/step-NNNNNNNN`` atomically and return it (``state["step"]`` names the directory)."""
    final = Path(root) / step_dir_name(int(state["step"]))
    with atomic_directory(final) as tmp:
        save_file(dict(trainable), str(tmp / WEIGHTS_NAME))
        torch.save({"optimizer": dict(optimizer), "scheduler": dict(scheduler)}, tmp / OPTIMIZER_NAME)
        torch.save(rng, tmp / RNG_NAME)
        # state.json last: its presence in the temp dir is not what marks completeness (the rename is),
        # but writing it last keeps partial temp dirs obviously partial when inspected by hand.
        (tmp / STATE_NAME).write_text(json.dumps(dict(state), indent=1) + "\n", encoding="utf-8")
    return final


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    path = Path(path)
    for name in (WEIGHTS_NAME, OPTIMIZER_NAME, RNG_NAME, STATE_NAME):
        if not (path / name).is_file():
            raise CheckpointError(f"{path}: checkpoint is incomplete, {name} is missing")
    try:
        state = json.loads((path / STATE_NAME).read_text(encoding="utf-8"))
        trainable = load_file(str(path / WEIGHTS_NAME))
        opt = torch.load(path / OPTIMIZER_NAME, map_location="cpu", weights_only=True)
        rng = torch.load(path / RNG_NAME, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path}/{STATE_NAME}: expected an object with an integer 'step'")
    return Checkpoint(path, trainable, opt["optimizer"], opt["scheduler"], rng, state)


def list_checkpoints(root: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Completed checkpoints under ``root`` as (step, path), oldest first; temp dirs are ignored."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune_checkpoints(root: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints; return what was removed."""
    found = list_checkpoints(root)
    removed = [path for _, path in found[: max(0, len(found) - keep)]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
