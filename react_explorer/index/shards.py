"""Precomputed embeddings in clip-retrieval's layout, read and written shard by shard (never all in memory).

    ROOT/img_emb/img_emb_{N}.npy      [rows, D] float16/float32 image embeddings
    ROOT/text_emb/text_emb_{N}.npy    [rows, D] caption embeddings (optional if img_emb exists, and vice versa)
    ROOT/metadata/metadata_{N}.parquet  one row per embedding row (url/image_path, caption, ...)

Shards are ordered by N; global row ids run through them in that order. Each chunk is read from a fresh
read-only memory map that is dropped right after the copy, so the resident memory of a reader stays at one
chunk, however large the shards are. Rows are re-normalised to unit length as float32 (LAION ships float16).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from react_explorer.errors import PoolFormatError
from react_explorer.index.npy_stream import NpyRowWriter
from vision_common.atomic import atomic_write_bytes

MODALITY_DIRS = {"image": "img_emb", "text": "text_emb"}
METADATA_DIR = "metadata"
STORED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))


@dataclass(frozen=True)
class EmbeddingShard:
    number: int
    rows: int
    files: dict[str, Path]  # modality -> .npy file
    metadata: Path


@dataclass(frozen=True)
class EmbeddingShards:
    """A validated set of shards: same modalities and dimension everywhere, row counts that agree."""

    root: Path
    shards: tuple[EmbeddingShard, ...]
    dim: int
    modalities: tuple[str, ...]

    @property
    def count(self) -> int:
        return sum(shard.rows for shard in self.shards)

    def iter_chunks(self, modality: str, chunk_rows: int = 65536) -> Iterator[np.ndarray]:
        """[<=chunk_rows, D] float32 unit vectors, in global row order (chunks never span shards)."""
        self._check_modality(modality)
        if chunk_rows <= 0:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        for shard in self.shards:
            for start in range(0, shard.rows, chunk_rows):
                yield _read_rows(shard.files[modality], start, min(start + chunk_rows, shard.rows))

    def sample(self, modality: str, size: int, seed: int) -> np.ndarray:
        """``size`` distinct random rows (sorted ids), read shard by shard: the IVF/PQ training set."""
        self._check_modality(modality)
        size = min(size, self.count)
        ids = np.sort(np.random.default_rng(seed).choice(self.count, size=size, replace=False))
        out = np.empty((size, self.dim), dtype=np.float32)
        offset, written = 0, 0
        for shard in self.shards:
            local = ids[(ids >= offset) & (ids < offset + shard.rows)] - offset
            if local.size:
                rows = _open_npy(shard.files[modality])[local]
                out[written : written + local.size] = _normalise(np.asarray(rows, dtype=np.float32))
                written += local.size
            offset += shard.rows
        return out

    def iter_metadata(self) -> Iterator[pa.Table]:
        """One table per shard with ``key`` (str; the global row number when the shard has none) and ``caption``."""
        offset = 0
        schema: pa.Schema | None = None
        for shard in self.shards:
            try:
                table = pq.read_table(shard.metadata)
            except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
                raise PoolFormatError(f"cannot read metadata shard {shard.metadata}: {exc}") from exc
            table = _normalise_metadata(table, offset, shard.metadata)
            if schema is None:
                schema = table.schema
            elif not table.schema.equals(schema):
                raise PoolFormatError(
                    f"metadata shard {shard.metadata} has columns {table.schema} unlike the first shard's {schema}"
                )
            offset += shard.rows
            yield table

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise PoolFormatError(
                f"embeddings {self.root} have no {modality!r} vectors (have {self.modalities})"
            )


def open_embedding_shards(root: str | os.PathLike[str]) -> EmbeddingShards:
    """Find and validate every shard (headers and parquet footers only; no vector is read)."""
    root = Path(root)
    found: dict[str, dict[int, Path]] = {}
    for modality, folder in MODALITY_DIRS.items():
        directory = root / folder
        files = _numbered(directory, folder, ".npy") if directory.is_dir() else {}
        if files:  # an empty folder means the modality was not embedded
            found[modality] = files
    if not found:
        raise PoolFormatError(f"embeddings {root}: neither img_emb/ nor text_emb/ exists")
    metadata = (
        _numbered(root / METADATA_DIR, "metadata", ".parquet") if (root / METADATA_DIR).is_dir() else {}
    )
    numbers = sorted(set().union(*(set(files) for files in found.values())))
    if not numbers:
        raise PoolFormatError(f"embeddings {root}: no *_N.npy shard found")
    shards, dim = [], None
    for number in numbers:
        files = {}
        for modality, by_number in found.items():
            if number not in by_number:
                raise PoolFormatError(
                    f"embeddings {root}: shard {number} has no {MODALITY_DIRS[modality]} file"
                )
            files[modality] = by_number[number]
        if number not in metadata:
            raise PoolFormatError(
                f"embeddings {root}: shard {number} has no metadata/metadata_{number}.parquet"
            )
        rows = None
        for path in files.values():
            shape = _npy_shape(path)
            if dim is None:
                dim = shape[1]
            if shape[1] != dim:
                raise PoolFormatError(f"{path}: dimension {shape[1]} differs from the first shard's {dim}")
            if rows is not None and shape[0] != rows:
                raise PoolFormatError(f"shard {number}: image and text files have {rows} and {shape[0]} rows")
            rows = shape[0]
        meta_rows = _parquet_rows(metadata[number])
        if meta_rows != rows:
            raise PoolFormatError(
                f"{metadata[number]} has {meta_rows} rows but the shard's vectors have {rows}"
            )
        shards.append(EmbeddingShard(number, int(rows), files, metadata[number]))
    return EmbeddingShards(root, tuple(shards), int(dim), tuple(m for m in MODALITY_DIRS if m in found))


def write_embedding_shard(
    root: str | os.PathLike[str],
    number: int,
    metadata: pa.Table,
    vectors: dict[str, Iterable[np.ndarray]],
    dim: int,
    *,
    dtype: np.dtype = np.dtype(np.float16),
) -> None:
    """Write one shard: each modality's batches stream into its .npy (temp file, then rename)."""
    root = Path(root)
    rows = metadata.num_rows
    for modality, batches in vectors.items():
        folder = root / MODALITY_DIRS[modality]
        folder.mkdir(parents=True, exist_ok=True)
        with NpyRowWriter(folder / f"{MODALITY_DIRS[modality]}_{number}.npy", rows, dim, dtype) as out:
            for batch in batches:
                if out.written + len(batch) > rows:
                    raise PoolFormatError(
                        f"shard {number}: more {modality} vectors than {rows} metadata rows"
                    )
                out.write(batch)
            if out.written != rows:
                raise PoolFormatError(
                    f"shard {number}: {out.written} {modality} vectors for {rows} metadata rows"
                )
    buffer = io.BytesIO()
    pq.write_table(metadata, buffer)
    atomic_write_bytes(root / METADATA_DIR / f"metadata_{number}.parquet", buffer.getvalue())


def _numbered(directory: Path, stem: str, suffix: str) -> dict[int, Path]:
    pattern = re.compile(rf"^{re.escape(stem)}_(\d+){re.escape(suffix)}$")
    found = {}
    for path in directory.iterdir():
        match = pattern.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _npy_shape(path: Path) -> tuple[int, int]:
    array = _open_npy(path)
    if array.ndim != 2:
        raise PoolFormatError(f"{path}: expected a [rows, dim] array, got shape {array.shape}")
    if array.dtype not in STORED_DTYPES:
        raise PoolFormatError(f"{path}: dtype {array.dtype} is not float16/float32")
    return int(array.shape[0]), int(array.shape[1])


def _open_npy(path: Path) -> np.ndarray:
    """A read-only memory map; callers copy what they need and drop it (its pages leave RSS with it)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PoolFormatError(f"cannot read embeddings {path} (corrupt or truncated?): {exc}") from exc


def _read_rows(path: Path, start: int, stop: int) -> np.ndarray:
    return _normalise(np.array(_open_npy(path)[start:stop], dtype=np.float32))


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    vectors /= norms
    return vectors


def _parquet_rows(path: Path) -> int:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise PoolFormatError(f"cannot read metadata shard {path} (corrupt or truncated?): {exc}") from exc


def _normalise_metadata(table: pa.Table, offset: int, source: Path) -> pa.Table:
    names = table.column_names
    if "key" in names:
        table = table.set_column(names.index("key"), "key", table.column("key").cast(pa.string()))
    else:
        table = table.add_column(0, "key", pa.array([f"{offset + i:09d}" for i in range(table.num_rows)]))
    if "caption" not in names:
        table = table.append_column("caption", pa.array([""] * table.num_rows, pa.string()))
    if "image_path" not in names and "url" not in names:
        raise PoolFormatError(f"metadata shard {source} has neither 'image_path' nor 'url'")
    return table
