"""What an export hands to the rest of the app: the subset file, the class names it was retrieved for, the CLIP
that embedded the index, the pool behind it, and a labelled task holding those classes.

REACT's next step after retrieval is customizing that CLIP on the subset and scoring it zero-shot on the target
classes (docs/react_customization.md). The explorer imports no trainer code (the layers forbid it), so it only
states these facts; the app shell hands them to the launcher, which prefills a ``react-customize`` job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from react_explorer.embedding.model_spec import parse_model_spec
from react_explorer.errors import EncoderLoadError
from react_explorer.index.clip_index import ClipIndex
from react_explorer.retrieval.prompt_templates import read_class_file


@dataclass(frozen=True)
class SubsetHandoff:
    """One export, as the "Customize CLIP on this subset" flow needs it."""

    subset: Path
    """The exported parquet."""
    class_names: tuple[str, ...]
    """The retrieval's class names, spelled as the matching task spells them when there is one."""
    model_dir: Path | None
    """The open_clip directory that embedded the index (None: the index names a hub or open_clip model)."""
    pool: Path | None
    """The pool the index was built from, as its manifest records it (None when not recorded)."""
    task_dir: Path | None
    """A labelled task holding every class (``<world>/tasks/<task>``), for the zero-shot before/after."""
    rows: int


def matching_task(tasks_dir: Path, class_names: tuple[str, ...]) -> tuple[Path, tuple[str, ...]] | None:
    """The task whose ``classes.txt`` holds every name (case-insensitive), and the names in its spelling.

    When several tasks do, the one with the fewest classes wins: its zero-shot problem is the closest to the
    retrieval's. None when no task does (typed class names outside every task), or there are no tasks."""
    if not class_names or not tasks_dir.is_dir():
        return None
    best: tuple[int, str, Path, tuple[str, ...]] | None = None
    for classes_file in sorted(tasks_dir.glob("*/classes.txt")):
        try:
            spelling = {name.casefold(): name for name in read_class_file(classes_file)}
        except (OSError, ValueError):  # an unreadable task is simply not a match
            continue
        if all(name.casefold() in spelling for name in class_names):
            candidate = (len(spelling), classes_file.parent.name, classes_file.parent,
                         tuple(spelling[name.casefold()] for name in class_names))  # fmt: skip
            best = candidate if best is None or candidate[:2] < best[:2] else best
    return None if best is None else (best[2], best[3])


def index_model_dir(index: ClipIndex) -> Path | None:
    """The local open_clip directory recorded in the index manifest, or None (a hub or named model)."""
    if not index.model:
        return None
    try:
        spec = parse_model_spec(index.model)
    except EncoderLoadError:
        return None
    return Path(spec.location) if spec.kind == "local_dir" else None


def subset_handoff(
    index: ClipIndex, subset: Path, class_names: tuple[str, ...], rows: int, tasks_dir: Path
) -> SubsetHandoff:
    """The handoff of ``subset``, exported from a retrieval of ``class_names`` over ``index``."""
    pool = index.manifest.source.get("pool") if isinstance(index.manifest.source, dict) else None
    found = matching_task(tasks_dir, class_names)
    task_dir, names = found if found is not None else (None, class_names)
    return SubsetHandoff(
        subset=subset,
        class_names=names,
        model_dir=index_model_dir(index),
        pool=Path(pool) if isinstance(pool, str) and pool else None,
        task_dir=task_dir,
        rows=rows,
    )
