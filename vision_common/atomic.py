"""Atomic writes: nothing half-written is ever visible under the final name.

Every writer in the project goes through these helpers: data is written to a temporary sibling (same
filesystem, so ``os.replace`` is atomic) and renamed into place only when complete. A failure removes the
temporary and leaves any previous output untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class OutputNotWritableError(OSError):
    """The output location cannot be created or written; the message names the path."""


def _ensure_parent(path: Path) -> Path:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(
            f"cannot create output directory {parent}: {exc.strerror or exc}"
        ) from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputNotWritableError(f"output directory {parent} is not writable")
    return parent


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory, then rename."""
    path = Path(path)
    parent = _ensure_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        # mkstemp creates 0600 files; published outputs get the usual permissions (0666 minus the umask).
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


def emit_json_report(report: Any, out: str | os.PathLike[str] | None, as_json: bool) -> bool:
    """The edge of the probe CLIs: write ``report`` to ``out`` (atomically) when given, print it as JSON when
    ``as_json``; returns ``as_json``, so the caller prints its one-line text summary otherwise."""
    if out:
        atomic_write_json(out, report)
    if as_json:
        print(json.dumps(report, indent=1))
    return as_json


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory next to ``final``; on success it replaces ``final`` in one rename.

    On any exception the temporary directory is removed and an existing ``final`` is left as it was.
    With ``overwrite=False`` an existing ``final`` is an error (raised before anything is written).
    """
    final = Path(final)
    parent = _ensure_parent(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"output {final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent))
    os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp makes 0700 folders; the output is meant to be shared
    try:
        yield tmp
        if final.exists():
            # Move the old output aside first so the swap never leaves the name empty on failure.
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=parent))
            old.rmdir()
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
