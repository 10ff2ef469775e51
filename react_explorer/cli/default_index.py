"""The index a command uses when none is given: the embedded SynthWorld pool's, the same one the app's
explorer uses (same cache folder), built on first use with progress bars (issue 19: a newcomer's
``python -m react_explorer.retrieve --classes ...`` stopped at "--index is required")."""

from __future__ import annotations

import sys
from pathlib import Path

from react_explorer.errors import IndexLoadError
from react_explorer.ui.explorer_config import ExplorerConfig
from react_explorer.ui.index_sources import (
    build_embedded_index,
    embedded_index_dir,
    embedded_index_ready,
    embedded_problem,
)


def embedded_index(cfg: ExplorerConfig, *, progress: bool = True) -> Path:
    """The embedded index directory, built now when missing (``IndexLoadError`` naming the fix when the world
    or its CLIP is missing)."""
    problem = embedded_problem(cfg)
    if problem:
        raise IndexLoadError(f"no --index given and {problem}")
    directory = embedded_index_dir(cfg)
    if embedded_index_ready(directory):
        return directory
    print(
        f"no --index given: indexing the SynthWorld pool {cfg.pool_parquet} into {directory} "
        "(first use only, a few minutes on a CPU)",
        file=sys.stderr,
        flush=True,
    )
    seconds = build_embedded_index(cfg, directory, progress=progress)
    print(f"index built in {seconds:.0f} s", file=sys.stderr, flush=True)
    return directory
