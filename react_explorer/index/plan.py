"""Which FAISS index to build for N vectors of dimension D under a memory budget (pure functions).

Rules (``index_type="auto"``), all over L2-normalised vectors with inner-product (= cosine) search:

1. N < ``flat_threshold`` (100k): ``Flat``. Exact; a query scans N*D floats, still milliseconds at 100k.
2. HNSW fits the budget (D*4 + M*2*4 bytes per vector, the faiss wiki estimate): ``HNSW{M}``. HNSW wins
   whenever it fits in memory (autofaiss' rule too), at recall 0.95-0.99 and 100-1000x the speed of Flat.
3. IVF-PQ codes fit the budget (pq_m + 8 bytes per vector plus the centroids): ``IVF{nlist},PQ{m}`` in memory,
   with exact re-ranking of ``k * rerank_factor`` candidates from the stored vectors (PQ alone caps recall@10
   near 0.55 on 512-d vectors).
4. Otherwise the same IVF-PQ with its inverted lists on disk (``OnDiskInvertedLists``, memory-mapped).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from react_explorer.errors import IndexBuildError

GIB = 1 << 30
INDEX_TYPES = ("auto", "flat", "hnsw", "ivfpq")
VECTOR_DTYPES = ("float16", "float32")
# faiss warns below 39 training points per centroid; PQ's 256 centroids per sub-quantizer need 39 * 256.
MIN_POINTS_PER_CENTROID = 39
PQ_CENTROIDS = 256
MIN_IVFPQ_VECTORS = 1000
IndexKind = Literal["flat", "hnsw", "ivfpq"]


@dataclass(frozen=True)
class IndexBuildConfig:
    """How to build (and by default search) an index; ``tiny()`` for tests, ``default()`` for real pools."""

    index_type: str = "auto"  # auto | flat | hnsw | ivfpq
    max_index_memory: int = 4 * GIB  # bytes the in-memory index may use (clip-retrieval's default "4G")
    flat_threshold: int = 100_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None  # None: power of two nearest sqrt(N)
    pq_m: int | None = None  # bytes per PQ code; None: largest divisor of D <= min(64, D/2)
    ivf_nprobe: int = 64
    rerank_factor: int = 10  # PQ candidates per wanted result, re-scored exactly
    train_size: int | None = None  # None: max(64 per centroid, 39 * 256), capped at N
    on_disk: bool | None = None  # None: only when the IVF-PQ codes exceed max_index_memory
    vector_dtype: str = "float16"  # stored vectors for exact re-ranking (IVF-PQ only)
    chunk_rows: int = 65536  # vectors added per FAISS call (bounds the memory of a streaming build)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(
                f"IndexBuildConfig.index_type must be one of {INDEX_TYPES}, got {self.index_type!r}"
            )
        positive = {
            "max_index_memory": self.max_index_memory,
            "flat_threshold": self.flat_threshold,
            "hnsw_ef_construction": self.hnsw_ef_construction,
            "hnsw_ef_search": self.hnsw_ef_search,
            "ivf_nprobe": self.ivf_nprobe,
            "rerank_factor": self.rerank_factor,
            "chunk_rows": self.chunk_rows,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"IndexBuildConfig.{name} must be a positive int, got {value!r}")
        if not 4 <= self.hnsw_m <= 128:
            raise ValueError(f"IndexBuildConfig.hnsw_m must be in [4, 128], got {self.hnsw_m}")
        for name in ("ivf_nlist", "pq_m", "train_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"IndexBuildConfig.{name} must be a positive int or None, got {value!r}")
        if self.vector_dtype not in VECTOR_DTYPES:
            raise ValueError(f"IndexBuildConfig.vector_dtype must be one of {VECTOR_DTYPES}")
        if self.on_disk and self.index_type in ("flat", "hnsw"):
            raise ValueError(
                f"on_disk=True needs an IVF index; index_type={self.index_type!r} lives in memory"
            )
        if self.index_type in ("flat", "hnsw") and (self.ivf_nlist or self.pq_m):
            raise ValueError(f"ivf_nlist/pq_m apply to ivfpq, not to index_type={self.index_type!r}")

    @classmethod
    def tiny(cls, **overrides: Any) -> IndexBuildConfig:
        """Test preset: small chunks so streaming is exercised on a few hundred vectors."""
        return cls(
            **{"chunk_rows": 64, "hnsw_m": 16, "hnsw_ef_construction": 40, "hnsw_ef_search": 64, **overrides}
        )

    @classmethod
    def default(cls, **overrides: Any) -> IndexBuildConfig:
        return cls(**overrides)


@dataclass(frozen=True)
class IndexPlan:
    """The resolved choice: the faiss factory string, its parameters and why it was chosen."""

    kind: IndexKind
    factory: str
    on_disk: bool
    params: dict[str, Any]
    estimated_bytes: int  # in-memory size of the index (on-disk lists excluded)
    reason: str

    @property
    def stores_vectors(self) -> bool:
        """IVF-PQ keeps the full vectors next to the index for exact re-ranking (and deduplication)."""
        return self.kind == "ivfpq"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hnsw_bytes(n: int, d: int, m: int) -> int:
    return n * (d * 4 + m * 2 * 4)


def ivfpq_bytes(n: int, d: int, nlist: int, pq_m: int) -> int:
    return n * (pq_m + 8) + nlist * d * 4


def default_nlist(n: int) -> int:
    """Power of two nearest sqrt(N), at most N/39 (faiss' minimum training points per centroid)."""
    nlist = 2 ** round(math.log2(max(1.0, math.sqrt(n))))
    return max(1, min(nlist, n // MIN_POINTS_PER_CENTROID))


def default_pq_m(d: int) -> int:
    """Largest divisor of D that is at most min(64, D/2): 64-byte codes for 512-d, 16 for 32-d."""
    limit = max(1, min(64, d // 2))
    return max(m for m in range(1, limit + 1) if d % m == 0)


def plan_index(n: int, d: int, cfg: IndexBuildConfig) -> IndexPlan:
    """Pick the index for ``n`` vectors of dimension ``d``; raise ``IndexBuildError`` for impossible requests."""
    if n <= 0 or d <= 0:
        raise IndexBuildError(f"cannot index {n} vectors of dimension {d}")
    kind = cfg.index_type
    reason = f"index_type={kind}"
    if kind == "auto":
        if n < cfg.flat_threshold:
            kind, reason = "flat", f"N={n} < flat_threshold {cfg.flat_threshold}: exact search"
        elif hnsw_bytes(n, d, cfg.hnsw_m) <= cfg.max_index_memory:
            kind = "hnsw"
            reason = (
                f"HNSW{cfg.hnsw_m} needs {hnsw_bytes(n, d, cfg.hnsw_m)} B <= budget {cfg.max_index_memory} B"
            )
        else:
            kind = "ivfpq"
            reason = (
                f"HNSW{cfg.hnsw_m} needs {hnsw_bytes(n, d, cfg.hnsw_m)} B > budget {cfg.max_index_memory} B"
            )
    if kind == "flat":
        return IndexPlan("flat", "Flat", False, {}, n * d * 4, reason)
    if kind == "hnsw":
        params = {
            "m": cfg.hnsw_m,
            "ef_construction": cfg.hnsw_ef_construction,
            "ef_search": cfg.hnsw_ef_search,
        }
        return IndexPlan("hnsw", f"HNSW{cfg.hnsw_m}", False, params, hnsw_bytes(n, d, cfg.hnsw_m), reason)
    return _plan_ivfpq(n, d, cfg, reason)


def _plan_ivfpq(n: int, d: int, cfg: IndexBuildConfig, reason: str) -> IndexPlan:
    if n < MIN_IVFPQ_VECTORS:
        raise IndexBuildError(f"ivfpq needs at least {MIN_IVFPQ_VECTORS} vectors to train, got {n}; use flat")
    nlist = cfg.ivf_nlist or default_nlist(n)
    if nlist * MIN_POINTS_PER_CENTROID > n:
        raise IndexBuildError(
            f"ivf_nlist={nlist} needs >= {nlist * MIN_POINTS_PER_CENTROID} vectors, got {n}"
        )
    pq_m = cfg.pq_m or default_pq_m(d)
    if d % pq_m:
        raise IndexBuildError(f"pq_m={pq_m} must divide the dimension {d}")
    train_size = min(n, cfg.train_size or max(64 * nlist, MIN_POINTS_PER_CENTROID * PQ_CENTROIDS))
    in_memory = ivfpq_bytes(n, d, nlist, pq_m)
    on_disk = cfg.on_disk if cfg.on_disk is not None else in_memory > cfg.max_index_memory
    if on_disk:
        reason += (
            f"; IVF-PQ lists need {in_memory} B, kept on disk" if cfg.on_disk is None else "; on_disk=True"
        )
    params = {
        "nlist": nlist,
        "pq_m": pq_m,
        "nprobe": min(cfg.ivf_nprobe, nlist),
        "rerank_factor": cfg.rerank_factor,
        "train_size": train_size,
        "vector_dtype": cfg.vector_dtype,
    }
    estimated = nlist * d * 4 if on_disk else in_memory
    return IndexPlan("ivfpq", f"IVF{nlist},PQ{pq_m}", on_disk, params, estimated, reason)
