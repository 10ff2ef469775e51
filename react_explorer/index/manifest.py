"""The index directory's layout and ``manifest.json``: what was built, from what, and the bytes of every file.

    DIR/manifest.json       format, model, dim, count, per-modality plan + build time, files (bytes, sha256)
    DIR/metadata.parquet    one row per vector id (key, caption, url/image_path, ...)
    DIR/image.index         FAISS index over image embeddings (T2I, I2I)
    DIR/text.index          FAISS index over caption embeddings (T2T)
    DIR/<m>.ivfdata         on-disk inverted lists (IVF-PQ built with on_disk)
    DIR/<m>_emb.npy         the full vectors, for exact re-ranking of IVF-PQ candidates

Loading checks every file against the manifest: a missing file or a different size means truncation, a different
sha256 means corruption; both raise ``IndexLoadError`` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from react_explorer.errors import IndexLoadError
from vision_common.manifest import sha256_file

FORMAT = "react-explorer-index/1"
MANIFEST_NAME = "manifest.json"
METADATA_NAME = "metadata.parquet"
MODALITIES = ("image", "text")


def index_file(modality: str) -> str:
    return f"{modality}.index"


def ivfdata_file(modality: str) -> str:
    return f"{modality}.ivfdata"


def vectors_file(modality: str) -> str:
    return f"{modality}_emb.npy"


@dataclass(frozen=True)
class IndexManifest:
    model: str | None  # the CLIP model spec that embedded the pool (ModelSpec.describe()), if known
    dim: int
    count: int
    modalities: dict[str, dict[str, Any]]  # modality -> {"plan": IndexPlan.to_dict(), "build_seconds": float}
    files: dict[str, dict[str, Any]]  # file name -> {"bytes": int, "sha256": str}
    metadata_columns: list[str]
    source: dict[str, Any] = field(default_factory=dict)  # pool path and format, embedding settings
    created: str = ""
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plan(self, modality: str) -> dict[str, Any]:
        return self.modalities[modality]["plan"]


def describe_files(root: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {"bytes": (root / name).stat().st_size, "sha256": sha256_file(root / name)} for name in names
    }


def read_manifest(root: str | Path) -> IndexManifest:
    """Parse and check ``manifest.json``; every problem raises ``IndexLoadError`` naming the file and field."""
    root = Path(root)
    if not root.is_dir():
        raise IndexLoadError(f"index directory {root} not found")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise IndexLoadError(f"{root} is not an index directory: {MANIFEST_NAME} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexLoadError(f"{path} is corrupt (not valid JSON): {exc}") from exc
    if not isinstance(data, dict):
        raise IndexLoadError(f"{path}: expected a JSON object")
    if data.get("format") != FORMAT:
        raise IndexLoadError(f"{path}: format {data.get('format')!r} is not {FORMAT!r}")
    for name, kind in (("dim", int), ("count", int), ("modalities", dict), ("files", dict)):
        if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
            raise IndexLoadError(f"{path}: field {name!r} must be a {kind.__name__}, got {data.get(name)!r}")
    if data["dim"] <= 0 or data["count"] <= 0:
        raise IndexLoadError(f"{path}: dim and count must be positive, got {data['dim']} and {data['count']}")
    unknown = sorted(set(data["modalities"]) - set(MODALITIES))
    if unknown or not data["modalities"]:
        raise IndexLoadError(f"{path}: modalities must be a non-empty subset of {MODALITIES}, got {unknown}")
    for modality, entry in data["modalities"].items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("plan"), dict)
            or "kind" not in entry["plan"]
        ):
            raise IndexLoadError(f"{path}: modalities.{modality} has no plan with a 'kind'")
    known = set(IndexManifest.__dataclass_fields__)
    extra = sorted(set(data) - known)
    if extra:
        raise IndexLoadError(f"{path}: unknown fields {extra}")
    try:
        return IndexManifest(**data)
    except TypeError as exc:
        raise IndexLoadError(f"{path}: {exc}") from exc


def verify_files(root: Path, manifest: IndexManifest, *, checksums: bool) -> None:
    """Sizes always (truncation), sha256 when ``checksums`` (corruption); a missing file is an error too."""
    for name, entry in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise IndexLoadError(f"index {root}: file {name} listed in {MANIFEST_NAME} is missing")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise IndexLoadError(
                f"index {root}: {name} has {size} bytes, the manifest says {entry.get('bytes')} (truncated or "
                "replaced); rebuild the index"
            )
        if checksums and sha256_file(path) != entry.get("sha256"):
            raise IndexLoadError(
                f"index {root}: {name} is corrupt (sha256 differs from the manifest); rebuild"
            )
