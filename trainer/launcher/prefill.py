"""Filling the launcher's form from outside it, and keeping what was filled when the preset changes.

The explorer's "Customize CLIP on this subset" hands over an export (``SubsetHandoff``); this module turns it into
the parameters of a ``react-customize`` job: the subset, the retrieval's class names, the CLIP that embedded the
index as the base, the labelled task holding those classes (scored before and after), and the pool (for "Re-index
the pool with this CLIP" once the job has finished). The user checks them, may pick another preset, and presses
Start: a prefill never starts anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from react_explorer.ui.subset_handoff import SubsetHandoff
from trainer.launcher.job_types import JobType
from trainer.launcher.workspace import is_inside
from vision_common.paths import PROJECT_ROOT

REACT_JOB = "react-customize"
# The preset a user gets from the explorer: the embedded tiny CLIP's recipe (docs/react_customization.md),
# minutes on a CPU; "tiny" is a smoke run.
REACT_FLOW_PRESET = "synthworld"


def job_path(path: Path, project_root: Path = PROJECT_ROOT) -> str:
    """A path as job parameters take it: relative to the project when inside it (the default workspace ``runs/``
    is), else absolute; an absolute path is accepted at Start only inside the workspace (else refused, naming
    the field)."""
    resolved = Path(path).resolve()
    if is_inside(project_root, resolved):
        return str(resolved.relative_to(project_root.resolve()))
    return str(resolved)


def react_customize_values(handoff: SubsetHandoff, project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The ``react-customize`` parameters an export implies; what it does not know keeps the job's default (the
    base: the embedded tiny CLIP) or stays empty (no task holds the classes: no before/after scores)."""
    values: dict[str, Any] = {
        "subset": job_path(handoff.subset, project_root),
        "classes": ", ".join(handoff.class_names),
    }
    for name, path in (("base", handoff.model_dir), ("eval_task", handoff.task_dir), ("pool", handoff.pool)):
        if path is not None:
            values[name] = job_path(path, project_root)
    return values


def form_params(
    job_type: JobType, preset: str | None, values: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the parameter editor shows: ``preset`` first, then every field (defaults < preset < ``values``)."""
    chosen = dict(job_type.presets.get(preset, {})) if preset else {}
    merged = {**job_type.defaults(), **chosen, **(values or {})}
    return {"preset": preset, **merged} if preset else merged


def switch_preset(job_type: JobType, current: str, preset: str | None) -> dict[str, Any]:
    """The editor's parameters after picking ``preset``: the new preset over the defaults, plus every value in
    ``current`` that its own preset would not have set (the user's or a flow's edits, e.g. the prefilled
    subset). Text that is not a JSON object of known fields starts over from the preset."""
    try:
        old = json.loads(current or "{}")
    except json.JSONDecodeError:
        old = None
    if not isinstance(old, dict):
        return form_params(job_type, preset)
    old_preset = old.get("preset") if old.get("preset") in job_type.presets else None
    baseline = form_params(job_type, old_preset)
    fields = job_type.defaults()
    edits = {k: v for k, v in old.items() if k in fields and (k not in baseline or baseline[k] != v)}
    return form_params(job_type, preset, edits)


def prefill_note(handoff: SubsetHandoff, values: Mapping[str, Any]) -> str:
    """The status line after a prefill: what came from the export, and what is missing."""
    note = (
        f"Prefilled a **{REACT_JOB}** job from the explorer's export `{handoff.subset.name}` "
        f"({handoff.rows} rows, {len(handoff.class_names)} classes). Check the parameters, pick a preset, "
        "then **Start**."
    )
    if "eval_task" not in values:
        note += " No task of the world holds these classes, so the job reports no before/after scores."
    return note
