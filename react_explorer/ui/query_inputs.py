"""The explorer's query form as pure functions: class lists (typed, pasted or a SynthWorld task), template
sets or an uploaded template file, mode, k and dedup -> one validated ``ExplorerQuery``.

Every problem raises ``QueryError`` with the message the page shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from react_explorer.errors import QueryError
from react_explorer.retrieval.algorithms import DEFAULT_DEDUP_THRESHOLD
from react_explorer.retrieval.class_queries import MODES, RetrievalConfig
from react_explorer.retrieval.prompt_templates import (
    TEMPLATE_SETS,
    load_templates,
    parse_class_names,
    read_class_file,
)

TEMPLATE_FILE = "file"  # the template choice that uses the uploaded file
TEMPLATE_CHOICES = (*TEMPLATE_SETS, TEMPLATE_FILE)
DEFAULT_TEMPLATES = "synthworld"  # twice the precision of "openai" on SynthWorld (docs/react_explorer.md)
MAX_K = 200
CLASSES_FILE = "classes.txt"


@dataclass(frozen=True)
class ExplorerQuery:
    """What one press of "Retrieve" asks for."""

    index: str  # an ``IndexChoice.value``
    class_names: tuple[str, ...]
    templates: tuple[str, ...]
    template_source: str  # "synthworld", "openai", ..., or the uploaded file's name
    retrieval: RetrievalConfig
    model: str | None  # None: the model recorded in the index manifest

    @property
    def prompt_count(self) -> int:
        return len(self.class_names) * len(self.templates)


def parse_classes(text: str | None) -> tuple[str, ...]:
    """Comma- or newline-separated class names (pasted lists may mix both), trimmed, first of duplicates kept."""
    return parse_class_names(text or "")


def resolve_templates(
    choice: str, template_file: str | os.PathLike[str] | None
) -> tuple[tuple[str, ...], str]:
    """(templates, where they came from) for a built-in set or the uploaded file."""
    if choice not in TEMPLATE_CHOICES:
        raise QueryError(f"unknown template set {choice!r}; choose one of {TEMPLATE_CHOICES}")
    if choice != TEMPLATE_FILE:
        return load_templates(choice), choice
    if not template_file:
        raise QueryError(
            "template set 'file' needs a template file: upload a text file with one template per line, "
            "each with {} where the class name goes"
        )
    path = Path(template_file)
    return load_templates(path), path.name


def parse_k(value: float | int | str | None) -> int:
    """The k slider's value as an int in 1..MAX_K (the API may send floats or strings)."""
    try:
        k = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise QueryError(f"k must be a number in 1..{MAX_K}, got {value!r}") from None
    if k != int(k) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be a whole number in 1..{MAX_K}, got {value!r}")
    return int(k)


def build_query(
    index: str | None,
    classes_text: str | None,
    template_choice: str,
    template_file: str | os.PathLike[str] | None,
    mode: str,
    k: float | int | str | None,
    dedup: bool,
    model: str | None = None,
) -> ExplorerQuery:
    """Validate the whole form; cheap checks only (nothing is loaded)."""
    if not index:
        raise QueryError("choose an index first")
    names = parse_classes(classes_text)
    templates, source = resolve_templates(template_choice, template_file)
    if mode not in MODES:
        raise QueryError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    cfg = RetrievalConfig(mode=mode, k=parse_k(k), dedup=bool(dedup), dedup_threshold=DEFAULT_DEDUP_THRESHOLD)
    return ExplorerQuery(index, names, templates, source, cfg, (model or "").strip() or None)


def list_tasks(tasks_dir: Path) -> list[str]:
    """SynthWorld downstream tasks (``tasks/<task>/classes.txt``), sorted; none when the world is missing."""
    if not tasks_dir.is_dir():
        return []
    return sorted(p.parent.name for p in tasks_dir.glob(f"*/{CLASSES_FILE}"))


def task_classes_text(tasks_dir: Path, task: str) -> str:
    """The task's classes, one per line, for the class box."""
    if not task or "/" in task or "\\" in task or task.startswith("."):
        raise QueryError(f"unknown task {task!r}")
    path = tasks_dir / task / CLASSES_FILE
    if not path.is_file():
        raise QueryError(f"task {task!r} has no {CLASSES_FILE} under {tasks_dir}")
    return "\n".join(read_class_file(path))
