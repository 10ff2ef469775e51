"""Export of the retrieved subset: a validated name -> ``<export_dir>/<name>.parquet``, written atomically in the
schema of ``python -m react_explorer.retrieve`` (img2dataset-ready)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from react_explorer.errors import QueryError
from vision_common.atomic import atomic_write_bytes

SUFFIX = ".parquet"
# A plain file name: no folders, no leading dot (hidden files are not served), nothing a shell would trip on.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def export_path(export_dir: Path, name: str | None) -> Path:
    """Where an export named ``name`` goes; anything but a plain file name is refused."""
    stem = (name or "").strip()
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    if not stem:
        raise QueryError("give the export a name, e.g. species_subset")
    if not _NAME.fullmatch(stem) or ".." in stem:
        raise QueryError(
            f"export name {name!r} is not a plain file name: use letters, digits, '.', '_' and '-' "
            "(at most 100, no folders)"
        )
    path = (export_dir / f"{stem}{SUFFIX}").resolve()
    if path.parent != export_dir.resolve():
        raise QueryError(f"export name {name!r} leaves the export folder {export_dir}")
    return path


def write_subset(table: pa.Table, path: Path) -> Path:
    """Write the subset parquet atomically (a reader never sees half a file)."""
    if table.num_rows == 0:
        raise QueryError("the subset is empty: nothing was retrieved, so nothing is exported")
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
