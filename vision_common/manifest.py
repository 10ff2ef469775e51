"""Artifact manifests: every committed file with its size, sha256 and the command that produced it.

A manifest lets anyone check that ``assets/`` is exactly what the recipe produced (``verify_manifest``) and
see how to reproduce each file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vision_common.atomic import atomic_write_json

MANIFEST_NAME = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _producer_for(rel: str, producers: dict[str, str]) -> str | None:
    """The step whose declared output is the longest prefix of ``rel``."""
    best = None
    for prefix, step in producers.items():
        if (rel == prefix or rel.startswith(prefix.rstrip("/") + "/")) and (
            best is None or len(prefix) > best[0]
        ):
            best = (len(prefix), step)
    return best[1] if best else None


def build_manifest(
    root: Path,
    *,
    producers: dict[str, str],
    commands: dict[str, str],
    metrics: dict[str, Any],
    recipe: dict[str, Any],
) -> dict[str, Any]:
    """Describe every file under ``root`` (except the manifest itself)."""
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        rel = path.relative_to(root).as_posix()
        step = _producer_for(rel, producers)
        files.append(
            {
                "file": rel,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "step": step,
                "command": commands.get(step) if step else None,
            }
        )
    return {
        "files": files,
        "total_bytes": sum(f["bytes"] for f in files),
        "commands": commands,
        "metrics": metrics,
        "recipe": recipe,
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    return atomic_write_json(root / MANIFEST_NAME, manifest)


def verify_manifest(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems found (missing files, size or hash mismatches, unlisted files); empty when all is well."""
    problems = []
    listed = set()
    for entry in manifest["files"]:
        path = root / entry["file"]
        listed.add(entry["file"])
        if not path.is_file():
            problems.append(f"missing: {entry['file']}")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"size mismatch: {entry['file']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"sha256 mismatch: {entry['file']}")
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and path.name != MANIFEST_NAME and rel not in listed:
            problems.append(f"not in manifest: {rel}")
    return problems
