"""Which indexes the explorer offers: the embedded SynthWorld pool (built on first use into a cache folder keyed
by the CLIP's weights) and user-built index directories (``--react-index``, ``runs/react/*/manifest.json``, and
the launcher's finished index-build jobs).

Listing reads only ``manifest.json`` files (no FAISS, no torch), so the tab factory stays cheap.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from react_explorer.cli import build_index
from react_explorer.errors import IndexLoadError
from react_explorer.index.manifest import MANIFEST_NAME
from react_explorer.ui.explorer_config import ExplorerConfig
from vision_common.manifest import sha256_file

EMBEDDED = "embedded"  # the dropdown value of the embedded pool; user indexes use their directory
CLIP_WEIGHTS = "open_clip_model.safetensors"
_KEY_CHARS = 12


@dataclass(frozen=True)
class IndexChoice:
    """One entry of the index selector."""

    label: str
    value: str
    directory: Path | None  # None for the embedded pool until its cache folder is known


def embedded_problem(cfg: ExplorerConfig) -> str | None:
    """Why the embedded pool cannot be used (world or CLIP missing), with the command that fixes it; else None."""
    if not cfg.pool_parquet.is_file():
        return (
            f"the SynthWorld world is not generated yet ({cfg.pool_parquet} is missing): run "
            f"`python -m trainer.synthworld generate --out {cfg.world} --seed 0 --preset default` "
            "(a few minutes, once), or pick a user-built index"
        )
    if not (cfg.clip_dir / CLIP_WEIGHTS).is_file():
        return (
            f"the SynthWorld tiny CLIP is missing ({cfg.clip_dir / CLIP_WEIGHTS}): build it with the foundation "
            "recipe, or pick a user-built index"
        )
    return None


def embedded_index_dir(cfg: ExplorerConfig) -> Path:
    """``cache_root/<world>-<world manifest hash>-clip-<weights hash>``: a new CLIP or world gets a new index."""
    clip_key = sha256_file(cfg.clip_dir / CLIP_WEIGHTS)[:_KEY_CHARS]
    world_manifest = cfg.world / "manifest.json"
    world_key = sha256_file(world_manifest)[:8] if world_manifest.is_file() else "nomanifest"
    return cfg.cache_root / f"{cfg.world.name}-{world_key}-clip-{clip_key}"


def embedded_index_ready(directory: Path) -> bool:
    return (directory / MANIFEST_NAME).is_file()


def build_embedded_index(cfg: ExplorerConfig, out: Path, *, progress: bool = True) -> float:
    """Embed and index the world's pool into ``out`` (atomically, by ``build_index``); returns the seconds taken.

    The tqdm bars of embedding and indexing are what ``gr.Progress(track_tqdm=True)`` shows in the page.
    """
    problem = embedded_problem(cfg)
    if problem:
        raise IndexLoadError(problem)
    argv = ["--pool", str(cfg.pool_parquet), "--out", str(out), "--model", f"local-dir:{cfg.clip_dir}"]
    argv += ["--workers", str(cfg.build_workers), "--batch-size", str(cfg.build_batch_size)]
    if not progress:
        argv.append("--no-progress")
    start = time.perf_counter()
    build_index.build(build_index.build_parser().parse_args(argv))
    return time.perf_counter() - start


# Where the launcher's index-build jobs leave their index (trainer/launcher/job_types.py: ``--out run/index``).
JOB_INDEX_GLOB = f"jobs/*/run/index/{MANIFEST_NAME}"


def job_index_dirs(cfg: ExplorerConfig) -> list[Path]:
    """Finished index-build jobs' indexes in the launcher's workspace (a manifest is written last, atomically)."""
    if cfg.job_workspace is None or not (cfg.job_workspace / "jobs").is_dir():
        return []
    return sorted(p.parent.resolve() for p in cfg.job_workspace.glob(JOB_INDEX_GLOB))


def user_index_dirs(cfg: ExplorerConfig) -> list[Path]:
    """Command-line indexes first (in order), then ``runs_root/*`` holding a manifest, then the launcher's
    index-build jobs, each directory once."""
    found: list[Path] = list(cfg.user_indexes)
    if cfg.runs_root.is_dir():
        found += sorted(p.parent.resolve() for p in cfg.runs_root.glob(f"*/{MANIFEST_NAME}"))
    found += job_index_dirs(cfg)
    return list(dict.fromkeys(found))


def describe_index_dir(directory: Path, name: str | None = None) -> str:
    """``name (30,000 pairs, 128-d)`` from the manifest alone; a problem is named instead of hidden."""
    path = directory / MANIFEST_NAME
    name = name or directory.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return f"{name} ({int(data['count']):,} pairs, {int(data['dim'])}-d)"
    except FileNotFoundError:
        return f"{name} (no {MANIFEST_NAME})"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{name} (unreadable {MANIFEST_NAME})"


def index_choices(cfg: ExplorerConfig) -> list[IndexChoice]:
    """The selector's entries: the embedded pool first, then every user-built index."""
    problem = embedded_problem(cfg)
    embedded_label = f"SynthWorld pool ({cfg.world.name}, tiny CLIP)" + (
        " - not available" if problem else ""
    )
    choices = [IndexChoice(embedded_label, EMBEDDED, None)]
    jobs = set(job_index_dirs(cfg))
    for directory in user_index_dirs(cfg):
        # Every job's index folder is called "index": its job id says which one it is.
        name = f"job {directory.parents[1].name}" if directory in jobs else None
        choices.append(IndexChoice(describe_index_dir(directory, name), str(directory), directory))
    return choices


def pool_folders(cfg: ExplorerConfig) -> tuple[str, ...]:
    """Folders whose images the galleries show: the world's pool and each user index's recorded pool folder."""
    folders = [cfg.world / "pool"]
    for directory in user_index_dirs(cfg):
        pool = _recorded_pool(directory)
        if pool is not None:
            folders.append(pool if pool.is_dir() else pool.parent)
    return tuple(sorted({str(folder) for folder in folders}))


def _recorded_pool(directory: Path) -> Path | None:
    try:
        data = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
        pool = data.get("source", {}).get("pool")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(pool) if isinstance(pool, str) and pool else None
