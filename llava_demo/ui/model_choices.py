"""What the model selector lists: the presets a backend can serve, plus LLaVA-NeXT checkpoints found on disk
(the embedded assets and the trainer's ``runs/``, so a model trained a minute ago shows up after a refresh).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llava_demo.presets import ModelPreset
from llava_demo.ui.hub_cache import HubProblem, current_hub_problem
from vision_common.paths import PROJECT_ROOT

ChoiceKind = Literal["preset", "checkpoint", "served"]
# transformers writes this model_type for LlavaNextForConditionalGeneration checkpoints.
LLAVA_NEXT_MODEL_TYPE = "llava_next"
# runs/<name>/<stage>/final is three levels deep; one more covers an extra grouping folder.
DEFAULT_SCAN_DEPTH = 4
# Atomic writers stage into hidden siblings; half-written checkpoints must not be offered.
_SKIPPED_PREFIXES = (".", "__")


@dataclass(frozen=True)
class ModelChoice:
    """One selector entry: ``value`` is what ``make_backend`` receives, ``label`` what people read."""

    label: str
    value: str
    kind: ChoiceKind
    available: bool = True
    """False when a local preset's folder has no checkpoint yet (the embedded model before training), or a hub
    preset is neither cached nor downloadable (offline)."""


def is_llava_next_checkpoint(folder: Path) -> bool:
    """A folder with a ``config.json`` whose ``model_type`` is llava_next (unreadable configs: no)."""
    config = folder / "config.json"
    try:
        document = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("model_type") == LLAVA_NEXT_MODEL_TYPE


def find_local_checkpoints(roots: Iterable[Path], max_depth: int = DEFAULT_SCAN_DEPTH) -> list[Path]:
    """LLaVA-NeXT checkpoint folders under ``roots`` (at most ``max_depth`` levels down), sorted by path.

    A checkpoint's own subfolders are not searched (they hold weights, not more models); missing roots are
    skipped, since ``runs/`` exists only after a first training run.
    """
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for current, subdirs, _files in os.walk(root):
            here = Path(current)
            depth = len(here.relative_to(root).parts)
            if is_llava_next_checkpoint(here):
                found.append(here.resolve())
                subdirs.clear()
                continue
            if depth >= max_depth:
                subdirs.clear()
                continue
            subdirs[:] = sorted(d for d in subdirs if not d.startswith(_SKIPPED_PREFIXES))
    return sorted(set(found))


def display_path(path: Path, project_root: Path = PROJECT_ROOT) -> str:
    """Project-relative when inside the project (shorter, and the same on every machine)."""
    try:
        return str(path.resolve().relative_to(project_root.resolve()))
    except ValueError:
        return str(path)


def preset_choices(
    presets: Mapping[str, ModelPreset],
    project_root: Path = PROJECT_ROOT,
    hub_problem: HubProblem = current_hub_problem,
) -> list[ModelChoice]:
    """The presets the in-process backend can load (SGLang-only ones are left out), with availability: a hub
    preset is unavailable when ``hub_problem`` names a reason (offline and not cached), said in its label."""
    choices = []
    for preset in presets.values():
        if preset.backend != "transformers":
            continue
        if preset.source == "local":
            available = is_llava_next_checkpoint(project_root / preset.checkpoint)
            note = "embedded" if available else "not built yet"
        else:
            problem = hub_problem(preset.checkpoint)
            available = problem is None
            note = (
                f"hub: {preset.checkpoint}"
                if available
                else "unavailable: offline and not in the local cache"
            )
        choices.append(ModelChoice(f"{preset.name} ({note})", preset.name, "preset", available))
    return choices


def local_model_choices(
    presets: Mapping[str, ModelPreset],
    roots: Iterable[Path],
    current: str,
    project_root: Path = PROJECT_ROOT,
) -> list[ModelChoice]:
    """Selector entries for the local backend: ``current`` first if it is not a preset, then the presets,
    then checkpoints on disk that no preset points at."""
    choices = preset_choices(presets, project_root)
    preset_folders = {
        (project_root / p.checkpoint).resolve() for p in presets.values() if p.source == "local"
    }
    for folder in find_local_checkpoints(roots):
        if folder in preset_folders:
            continue
        choices.append(
            ModelChoice(f"{display_path(folder, project_root)} (checkpoint)", str(folder), "checkpoint")
        )
    if current not in {choice.value for choice in choices}:
        choices.insert(0, ModelChoice(f"{current} (from --model)", current, "checkpoint"))
    return choices


def served_model_choices(current: str, backend: str) -> list[ModelChoice]:
    """A remote server serves the one model it was started with."""
    return [ModelChoice(f"{current} ({backend} server)", current, "served")]
