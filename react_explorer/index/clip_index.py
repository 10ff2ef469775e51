"""``ClipIndex``: one loaded index directory (image and/or text FAISS index + metadata), verified and searchable.

Search parameters (HNSW ``efSearch``, IVF ``nprobe``) are passed per call as FAISS ``SearchParameters`` objects,
never set on the shared index, so concurrent searches (the knn service) do not race.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from react_explorer.errors import DimensionMismatchError, IndexLoadError, QueryError
from react_explorer.index.manifest import (
    METADATA_NAME,
    IndexManifest,
    index_file,
    read_manifest,
    vectors_file,
    verify_files,
)
from react_explorer.retrieval.algorithms import rerank_exact


@dataclass(frozen=True)
class SearchResult:
    """Top-k per query, best first; rows shorter than k (tiny indexes) are padded with id -1 / score -inf."""

    scores: np.ndarray  # [Q, k] float32 inner products (= cosine for unit vectors)
    ids: np.ndarray  # [Q, k] int64 row ids into the metadata


class ClipIndex:
    """A verified index directory. ``load`` is the only constructor callers need."""

    def __init__(
        self,
        root: Path,
        manifest: IndexManifest,
        metadata: pa.Table,
        indexes: dict[str, faiss.Index],
        vectors: dict[str, np.ndarray],
    ) -> None:
        self.root = root
        self.manifest = manifest
        self.metadata = metadata
        self._indexes = indexes
        self._vectors = vectors  # modality -> memory-mapped [count, dim] (IVF-PQ only)

    @classmethod
    def load(cls, root: str | os.PathLike[str], *, verify_checksums: bool = True) -> ClipIndex:
        """Read and verify: file sizes (and sha256), metadata rows == count, each index's ntotal and dimension."""
        root = Path(root)
        manifest = read_manifest(root)
        verify_files(root, manifest, checksums=verify_checksums)
        metadata = _read_metadata(root, manifest)
        indexes, vectors = {}, {}
        for modality in manifest.modalities:
            plan = manifest.plan(modality)
            indexes[modality] = _read_faiss(root, modality, manifest, plan)
            if plan["kind"] == "ivfpq":
                vectors[modality] = _read_vectors(root, modality, manifest)
        return cls(root, manifest, metadata, indexes, vectors)

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def count(self) -> int:
        return self.manifest.count

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self._indexes)

    @property
    def model(self) -> str | None:
        return self.manifest.model

    def check_query_dim(self, dim: int, what: str) -> None:
        if dim != self.dim:
            raise DimensionMismatchError(
                f"{what} has dimension {dim} but index {self.root} holds {self.dim}-d vectors "
                f"(built with model {self.model!r}); use the model the index was built with"
            )

    def search(
        self,
        queries: np.ndarray,
        k: int,
        modality: str,
        *,
        ef_search: int | None = None,
        nprobe: int | None = None,
        rerank_factor: int | None = None,
    ) -> SearchResult:
        """Top-``k`` rows of the ``modality`` index for each unit-norm query in ``queries`` [Q, D]."""
        index = self._index(modality)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2:
            raise QueryError(f"queries must be [Q, D], got shape {queries.shape}")
        self.check_query_dim(queries.shape[1], "the query")
        if not isinstance(k, int) or k <= 0:
            raise QueryError(f"k must be a positive int, got {k!r}")
        plan = self.manifest.plan(modality)
        kind = plan["kind"]
        if kind == "flat":
            scores, ids = index.search(queries, min(k, self.count))
        elif kind == "hnsw":
            ef = max(ef_search or plan["params"]["ef_search"], k)
            scores, ids = index.search(
                queries, min(k, self.count), params=faiss.SearchParametersHNSW(efSearch=ef)
            )
        else:
            factor = rerank_factor or plan["params"]["rerank_factor"]
            probe = faiss.SearchParametersIVF(nprobe=nprobe or plan["params"]["nprobe"])
            _, candidates = index.search(queries, min(k * factor, self.count), params=probe)
            scores, ids = rerank_exact(queries, candidates, self._vectors[modality], k)
        return SearchResult(*_pad(scores, ids, k))

    def vectors(self, ids: np.ndarray, modality: str) -> np.ndarray:
        """[len(ids), D] float32 stored vectors (exact for Flat/HNSW; the re-ranking copy for IVF-PQ)."""
        index = self._index(modality)
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.count):
            raise QueryError(f"ids must be in [0, {self.count}), got {ids.min()}..{ids.max()}")
        if modality in self._vectors:
            return np.asarray(self._vectors[modality][ids], dtype=np.float32)
        if not ids.size:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(index.reconstruct_batch(ids), dtype=np.float32)

    def rows(self, ids: np.ndarray | list[int]) -> list[dict[str, Any]]:
        """Metadata rows (dicts) for ``ids``, in the given order."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.count):
            raise QueryError(f"ids must be in [0, {self.count}), got {ids.min()}..{ids.max()}")
        return self.metadata.take(pa.array(ids)).to_pylist()

    def _index(self, modality: str) -> faiss.Index:
        if modality not in self._indexes:
            raise QueryError(f"index {self.root} has no {modality!r} index (has {self.modalities})")
        return self._indexes[modality]


def _read_metadata(root: Path, manifest: IndexManifest) -> pa.Table:
    path = root / METADATA_NAME
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise IndexLoadError(
            f"index {root}: cannot read {METADATA_NAME} (corrupt or truncated?): {exc}"
        ) from exc
    if table.num_rows != manifest.count:
        raise IndexLoadError(
            f"index {root}: {METADATA_NAME} has {table.num_rows} rows, manifest count is {manifest.count}"
        )
    return table


def _read_faiss(root: Path, modality: str, manifest: IndexManifest, plan: dict[str, Any]) -> faiss.Index:
    path = root / index_file(modality)
    # On-disk inverted lists are found next to the index file wherever the directory was moved.
    flags = faiss.IO_FLAG_ONDISK_SAME_DIR if plan.get("on_disk") else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise IndexLoadError(f"index {root}: cannot read {path.name} (corrupt or truncated?): {exc}") from exc
    if index.ntotal != manifest.count:
        raise IndexLoadError(
            f"index {root}: {path.name} holds {index.ntotal} vectors, manifest count is {manifest.count}"
        )
    if index.d != manifest.dim:
        raise IndexLoadError(
            f"index {root}: {path.name} has dimension {index.d}, manifest says {manifest.dim}"
        )
    return index


def _read_vectors(root: Path, modality: str, manifest: IndexManifest) -> np.ndarray:
    path = root / vectors_file(modality)
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexLoadError(f"index {root}: cannot read {path.name} (corrupt or truncated?): {exc}") from exc
    if vectors.shape != (manifest.count, manifest.dim):
        raise IndexLoadError(
            f"index {root}: {path.name} has shape {vectors.shape}, expected {(manifest.count, manifest.dim)}"
        )
    return vectors


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    if ids.shape[1] < k:
        extra = k - ids.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
    return scores, ids
