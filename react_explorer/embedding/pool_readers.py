"""Image-text pools as one metadata table: a parquet of pairs, or a folder of images with sidecar captions.

Every pool becomes a ``PairPool``: a pyarrow table with ``key`` (str), ``caption`` (str), and ``image_path``
(absolute) and/or ``url``, plus whatever other columns the source has (width, height, ...), in a stable order.
Precomputed embedding shards (the clip-retrieval layout) are read by ``embedding_shards`` instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from react_explorer.errors import PoolFormatError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PoolFormat = Literal["parquet", "folder", "embeddings"]


@dataclass(frozen=True)
class PairPool:
    """Pool metadata, one row per image-text pair; row i is vector i of every index built from it."""

    source: Path
    table: pa.Table

    def __post_init__(self) -> None:
        names = self.table.column_names
        for column in ("key", "caption"):
            if column not in names:
                raise PoolFormatError(f"pool {self.source}: no {column!r} column")
        if "image_path" not in names and "url" not in names:
            raise PoolFormatError(f"pool {self.source}: needs an 'image_path' or a 'url' column; has {names}")

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def has_image_files(self) -> bool:
        return "image_path" in self.table.column_names

    def image_files(self) -> list[Path]:
        if not self.has_image_files:
            raise PoolFormatError(
                f"pool {self.source} has only URLs, no image_path: download the images first (img2dataset) "
                "or build a text-only index (--modalities text)"
            )
        return [Path(p) for p in self.table.column("image_path").to_pylist()]

    def captions(self) -> list[str]:
        return self.table.column("caption").to_pylist()

    def row_names(self) -> list[str]:
        """``row 3 (key '000000003')`` per row: what error messages name."""
        return [f"row {i} (key {key!r})" for i, key in enumerate(self.table.column("key").to_pylist())]

    def slice(self, start: int, stop: int) -> PairPool:
        return PairPool(self.source, self.table.slice(start, max(0, stop - start)))


def detect_pool_format(path: str | os.PathLike[str]) -> PoolFormat:
    """A ``.parquet`` file, an embeddings folder (``img_emb/`` or ``text_emb/``), or a folder of images."""
    root = Path(path)
    if root.is_file():
        if root.suffix != ".parquet":
            raise PoolFormatError(f"pool file {root} is not a .parquet file")
        return "parquet"
    if not root.is_dir():
        raise PoolFormatError(f"pool {root} not found")
    if (root / "img_emb").is_dir() or (root / "text_emb").is_dir():
        return "embeddings"
    return "folder"


def read_pool(path: str | os.PathLike[str]) -> PairPool:
    """Read a parquet or image-folder pool (embedding folders are read by ``embedding_shards``)."""
    kind = detect_pool_format(path)
    if kind == "parquet":
        return read_parquet_pool(path)
    if kind == "folder":
        return read_image_folder(path)
    raise PoolFormatError(f"pool {path} holds precomputed embeddings; read it with embedding_shards")


def read_parquet_pool(path: str | os.PathLike[str]) -> PairPool:
    """``caption`` + (``image_path`` relative to the parquet's folder, or absolute) and/or ``url``; ``key`` optional.

    Rows without a key get their row number (9 digits, as SynthWorld keys). Null or non-string captions and
    image paths are errors naming the row; an empty caption is allowed (alt text is often empty).
    """
    source = Path(path)
    try:
        table = pq.read_table(source)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise PoolFormatError(f"cannot read pool parquet {source}: {exc}") from exc
    if table.num_rows == 0:
        raise PoolFormatError(f"pool parquet {source} has no rows")
    names = table.column_names
    if "caption" not in names:
        raise PoolFormatError(f"pool parquet {source}: no 'caption' column; has {names}")
    if "image_path" not in names and "url" not in names:
        raise PoolFormatError(f"pool parquet {source}: needs an 'image_path' or 'url' column; has {names}")
    table = _require_strings(table, "caption", source)
    if "key" in names:
        table = table.set_column(names.index("key"), "key", pc.cast(table.column("key"), pa.string()))
        _require_no_nulls(table, "key", source)
    else:
        keys = pa.array([f"{i:09d}" for i in range(table.num_rows)], pa.string())
        table = table.add_column(0, "key", keys)
    if "image_path" in table.column_names:
        table = _require_strings(table, "image_path", source)
        resolved = [str((source.parent / p).resolve()) for p in table.column("image_path").to_pylist()]
        index = table.column_names.index("image_path")
        table = table.set_column(index, "image_path", pa.array(resolved, pa.string()))
    return PairPool(source, table.combine_chunks())


def read_image_folder(path: str | os.PathLike[str]) -> PairPool:
    """Images (any depth, sorted) with a same-stem ``.txt`` caption next to each, as ``clip inference`` reads."""
    root = Path(path).resolve()
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise PoolFormatError(f"pool folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    captions = []
    for image in images:
        sidecar = image.with_suffix(".txt")
        if not sidecar.is_file():
            raise PoolFormatError(f"pool folder {root}: image {image} has no caption file {sidecar.name}")
        captions.append(sidecar.read_text(encoding="utf-8").strip())
    table = pa.table(
        {
            "key": [p.relative_to(root).with_suffix("").as_posix() for p in images],
            "image_path": [str(p) for p in images],
            "caption": captions,
        }
    )
    return PairPool(root, table)


def _require_strings(table: pa.Table, column: str, source: Path) -> pa.Table:
    values = table.column(column)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        raise PoolFormatError(
            f"pool parquet {source}: column {column!r} must hold strings, has {values.type}"
        )
    _require_no_nulls(table, column, source)
    return table


def _require_no_nulls(table: pa.Table, column: str, source: Path) -> None:
    values = table.column(column)
    if values.null_count:
        first = pc.index(pc.is_null(values), True).as_py()
        raise PoolFormatError(f"pool parquet {source}: row {first} has a null {column!r}")
