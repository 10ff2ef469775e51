"""Paths the launcher may touch: everything stays inside one workspace folder.

A path that comes from a user (a job's output name, a log to read, a folder to delete) is accepted only as a
relative path without ``..`` whose resolved location, symlinks followed, is still inside the workspace.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class PathOutsideWorkspaceError(ValueError):
    """A path would leave the workspace (absolute, ``..``, or a symlink pointing out); names the field."""


def confined(workspace: Path, relative: str, *, field: str) -> Path:
    """``workspace / relative``, refused unless it stays inside ``workspace`` after resolving symlinks."""
    if not isinstance(relative, str) or not relative.strip():
        raise PathOutsideWorkspaceError(f"{field} must be a non-empty relative path inside the workspace")
    if "\x00" in relative:
        raise PathOutsideWorkspaceError(f"{field} contains a NUL character")
    pure = PurePosixPath(relative.replace(os.sep, "/"))
    if pure.is_absolute() or Path(relative).is_absolute() or relative.startswith("~"):
        raise PathOutsideWorkspaceError(
            f"{field} {relative!r} must be relative to the workspace, not absolute"
        )
    if ".." in pure.parts:
        raise PathOutsideWorkspaceError(f"{field} {relative!r} must not contain '..'")
    root = workspace.resolve()
    target = (root / pure).resolve()
    if target != root and root not in target.parents:
        raise PathOutsideWorkspaceError(f"{field} {relative!r} resolves outside the workspace (a symlink?)")
    return target


def is_inside(workspace: Path, path: Path) -> bool:
    """True when ``path`` (symlinks resolved) is the workspace or inside it."""
    root, target = workspace.resolve(), Path(path).resolve()
    return target == root or root in target.parents
