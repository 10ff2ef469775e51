"""``ExplorerConfig``: where the explorer tab finds its world, model, indexes and cache, and where it exports.

No Gradio and no torch import: the app shell builds this from the explorer's own flags
(``add_explorer_arguments``) before anything heavy loads.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from react_explorer.embedding.model_spec import DEFAULT_MODEL_DIR
from vision_common.paths import PROJECT_ROOT

DEFAULT_WORLD = PROJECT_ROOT / ".cache" / "synthworld" / "default-seed0"
DEFAULT_CACHE_ROOT = PROJECT_ROOT / ".cache" / "react_explorer"
DEFAULT_RUNS_ROOT = PROJECT_ROOT / "runs" / "react"
EXPORTS_FOLDER = "exports"


@dataclass(frozen=True)
class ExplorerConfig:
    """Paths and display limits of the explorer tab (``tiny()`` for tests)."""

    world: Path = DEFAULT_WORLD
    """SynthWorld directory whose ``pool/pool.parquet`` is the embedded pool and ``tasks/*`` the task lists."""
    clip_dir: Path = DEFAULT_MODEL_DIR
    """The CLIP that embeds the embedded pool (its weights' hash keys the cached index)."""
    cache_root: Path = DEFAULT_CACHE_ROOT
    """Where the embedded pool's index is built on first use."""
    runs_root: Path = DEFAULT_RUNS_ROOT
    """``runs/react``: every ``*/manifest.json`` below it is offered as a user-built index."""
    export_dir: Path = DEFAULT_RUNS_ROOT / EXPORTS_FOLDER
    """Exports are written here and nowhere else (a name, never a path, comes from the page)."""
    user_indexes: tuple[Path, ...] = ()
    """Index directories named on the command line (listed even outside ``runs_root``)."""
    job_workspace: Path | None = None
    """The training launcher's workspace: the indexes its index-build jobs wrote (``jobs/<id>/run/index``, e.g.
    the pool re-embedded by a customized CLIP) are listed too. Set by the app shell when the launcher is on."""
    max_galleries: int = 32
    """Per-class galleries on the page; further classes are in the table and the export, not shown."""
    gallery_limit: int = 48
    """Images shown per class gallery (best first); the export holds every retrieved pair."""
    max_loaded_indexes: int = 2
    """Indexes kept in memory; the least recently used one is dropped."""
    build_batch_size: int = 256
    build_workers: int = 0
    """DataLoader decode processes for the first-use build (0: the vision tower, not decoding, bounds it)."""
    verify_checksums: bool = True
    """Hash every index file on load (a 30k-pair index hashes in well under a second)."""
    background_build: bool = True
    """Build a missing embedded index in a background thread from app start (``--react-no-background-build``:
    on the first Retrieve instead)."""

    def __post_init__(self) -> None:
        for name in ("world", "clip_dir", "cache_root", "runs_root", "export_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser().resolve())
        object.__setattr__(
            self, "user_indexes", tuple(Path(p).expanduser().resolve() for p in self.user_indexes)
        )
        if self.job_workspace is not None:
            object.__setattr__(self, "job_workspace", Path(self.job_workspace).expanduser().resolve())
        for name in ("max_galleries", "gallery_limit", "max_loaded_indexes", "build_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ExplorerConfig.{name} must be a positive int, got {value!r}")
        if self.build_workers < 0:
            raise ValueError(f"ExplorerConfig.build_workers must be >= 0, got {self.build_workers}")
        if self.export_dir == self.cache_root or self.cache_root in self.export_dir.parents:
            raise ValueError(
                f"ExplorerConfig.export_dir {self.export_dir} is inside the index cache {self.cache_root}; "
                "exports would be mixed with cached indexes"
            )
        for index_dir in self.user_indexes:
            if index_dir == self.export_dir or self.export_dir in index_dir.parents:
                raise ValueError(f"--react-index {index_dir} is inside the export folder {self.export_dir}")

    @classmethod
    def tiny(cls, root: Path, **overrides: Any) -> ExplorerConfig:
        """Everything under ``root`` (no world unless one is given), small galleries."""
        values: dict[str, Any] = {
            "world": root / "world",
            "cache_root": root / "cache",
            "runs_root": root / "runs" / "react",
            "export_dir": root / "runs" / "react" / EXPORTS_FOLDER,
            "max_galleries": 4,
            "gallery_limit": 8,
            "build_batch_size": 16,
            "background_build": False,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def pool_parquet(self) -> Path:
        return self.world / "pool" / "pool.parquet"

    @property
    def tasks_dir(self) -> Path:
        return self.world / "tasks"


def add_explorer_arguments(parser: argparse.ArgumentParser) -> None:
    """The explorer tab's flags on the app's command line."""
    group = parser.add_argument_group("REACT explorer")
    group.add_argument(
        "--react-index",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="an index built by python -m react_explorer.build_index, offered in the REACT explorer tab "
        "(repeatable; runs/react/*/ is found without it)",
    )
    group.add_argument(
        "--react-world",
        type=Path,
        default=None,
        metavar="DIR",
        help="SynthWorld world: its pool/ is the embedded pool, its tasks/ fill the class list and score REACT "
        f"jobs before/after (default {DEFAULT_WORLD.relative_to(PROJECT_ROOT)})",
    )
    group.add_argument(
        "--react-no-background-build",
        action="store_true",
        help="do not build a missing embedded SynthWorld index from app start (it is built on first use instead)",
    )


def explorer_config_from_args(args: argparse.Namespace) -> ExplorerConfig:
    """The tab's settings from its flags; a missing ``--react-index`` directory is a ``ValueError`` naming it."""
    missing = [str(path) for path in args.react_index if not path.is_dir()]
    if missing:
        raise ValueError(f"--react-index {missing[0]} is not a directory")
    world = getattr(args, "react_world", None)
    if world is not None and not world.is_dir():
        raise ValueError(f"--react-world {world} is not a directory")
    background = not getattr(args, "react_no_background_build", False)
    return ExplorerConfig(
        world=world or DEFAULT_WORLD, user_indexes=tuple(args.react_index), background_build=background
    )
